//! Criterion benches of the pure hot paths: deciding a command, folding the
//! log through the gate, projecting a record.

use criterion::{criterion_group, criterion_main, Criterion};
use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::orders::{OrderLine, OrdersCommandRecord, PlaceOrder};
use foldline_orders::domain::OrderState;
use foldline_orders::OrdersWire;
use foldline_platform::domain::{decide_record, ValidCommand};
use foldline_platform::processor::PartitionLog;

fn place(command: u128) -> ValidCommand<OrdersCommandRecord> {
    let record = OrdersCommandRecord::Place(PlaceOrder {
        metadata: CommandMetadata {
            command_id: uuid::Uuid::from_u128(command).to_string(),
            correlation_id: uuid::Uuid::from_u128(command).to_string(),
            causation_id: None,
            issued_at: 1_700_000_000_000,
            issued_by: "bench".to_owned(),
            traceparent: None,
        },
        order_id: uuid::Uuid::from_u128(command << 64).to_string(),
        customer_id: uuid::Uuid::from_u128(7).to_string(),
        currency: "EUR".to_owned(),
        lines: (0..5)
            .map(|line| OrderLine {
                sku: format!("SKU-{line}"),
                quantity: 2,
                unit_price: 1250,
            })
            .collect(),
        card_token: None,
    });
    ValidCommand::validate(record).expect("the bench command is valid")
}

fn benches(criterion: &mut Criterion) {
    let command = place(1);
    criterion.bench_function("decide PlaceOrder (5 lines)", |bench| {
        bench.iter(|| {
            decide_record::<OrdersWire>(&OrderState::default(), 0, std::hint::black_box(&command))
        })
    });
    let records: Vec<_> = (0..1_000)
        .map(|index| decide_record::<OrdersWire>(&OrderState::default(), 0, &place(index)))
        .collect();
    criterion.bench_function("fold 1000 records through the gate", |bench| {
        bench.iter(|| {
            let mut log = PartitionLog::<OrderState>::empty(0);
            for (offset, record) in records.iter().enumerate() {
                log.fold(&OrdersWire, record, offset as i64);
            }
            log
        })
    });
}

criterion_group!(domain, benches);
criterion_main!(domain);
