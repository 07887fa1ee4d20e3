//! Event handlers: confirmed orders feed the read model, cancelled ones take their part back.

use chassis::db::WriteTransaction;
use chassis::events::{Handler, HandlerError};
use contracts::events::{Envelope, OrderCancelled, OrderConfirmed};
use futures_util::future::BoxFuture;

use crate::store;

/// Handles `orders.order.confirmed`.
#[derive(Debug, Clone, Copy)]
pub struct Confirmed;

impl Handler for Confirmed {
    fn handle<'a>(
        &'a self,
        tx: &'a mut WriteTransaction,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let order: OrderConfirmed = event.decode()?;
            let products: Vec<(String, String)> =
                order.lines.into_iter().map(|l| (l.sku, l.name)).collect();
            store::record_order(tx, &order.order_id, &order.user_id, &products).await?;
            Ok(())
        })
    }
}

/// Handles `orders.order.cancelled` (a confirmed order the customer cancelled).
#[derive(Debug, Clone, Copy)]
pub struct Cancelled;

impl Handler for Cancelled {
    fn handle<'a>(
        &'a self,
        tx: &'a mut WriteTransaction,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let order: OrderCancelled = event.decode()?;
            store::forget_order(tx, &order.order_id).await?;
            Ok(())
        })
    }
}
