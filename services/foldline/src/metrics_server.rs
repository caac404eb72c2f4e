//! `GET /metrics`: this process's counters (`foldline_platform::metrics`)
//! as Prometheus text, on the gateway's router and on the `metrics.listen`
//! listener of any process.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use foldline_platform::metrics;
use tokio::net::TcpListener;

async fn render() -> impl IntoResponse {
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render())
}

/// `router` with `GET /metrics` added (outside its layers: a scrape is
/// answered even when the gateway sheds load).
pub fn with_metrics(router: Router) -> Router {
    router.route("/metrics", get(render))
}

/// Serves only `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, with_metrics(Router::new()))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_listener_serves_the_counters_as_prometheus_text() {
        metrics::metrics()
            .resyncs
            .with_label_values(&["metrics-test.events"])
            .inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = stopped.await;
        }));
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("text/plain; version=0.0.4"), "{response}");
        assert!(
            response.contains(r#"foldline_processor_resyncs_total{topic="metrics-test.events"} 1"#),
            "{response}"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
