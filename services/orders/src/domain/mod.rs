//! The pure orders domain: validated values, the order's commands, events
//! and state, and the [`Order`] decider that relates them.
//!
//! Nothing here does I/O, reads a clock or draws randomness; time arrives as
//! the [`DecisionContext`](foldline_eventsourcing::DecisionContext) of each
//! decision. Money is always an `i64` of minor units of the order's currency.

mod commands;
mod events;
mod order;
mod rejection;
mod state;
mod values;

#[cfg(test)]
mod tests;

pub use commands::{
    CancelOrder, MarkPaid, MarkPaymentFailed, OrderCommand, PlaceOrder, RejectOrder, ShipOrder,
};
pub use events::{
    OrderCancelled, OrderConfirmed, OrderEvent, OrderPaymentRejected, OrderPlaced, OrderRejected,
    OrderShipped, RefundOwed,
};
pub use foldline_eventsourcing::{Rejection, RejectionKind};
pub use order::Order;
pub use rejection::OrderRejection;
pub use state::{OrderDetails, OrderState, OrderStatus};
pub use values::{
    Currency, CurrencyError, CustomerId, IdError, OrderId, OrderLine, PaymentId, Quantity,
    QuantityError, Sku, SkuError, ACTIVE_CURRENCIES, MAX_CARD_TOKEN_CHARS, MAX_CODE_CHARS,
    MAX_LINES, MAX_ORDER_TOTAL, MAX_REASON_CHARS, MAX_UNIT_PRICE,
};
