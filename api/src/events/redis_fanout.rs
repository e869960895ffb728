//! Redis pub/sub as a doorbell between instances: after a commit an instance
//! publishes the fact, and every instance's relay reads the outbox at once.
//! Messages carry nothing the outbox does not have, so a lost one, or Redis
//! being down, costs only latency until the relays' next poll.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};

const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Publisher {
    doorbell: mpsc::Sender<()>,
}

impl Publisher {
    pub fn announce(&self) {
        // A full doorbell already has a ring pending, which covers this commit too.
        let _ = self.doorbell.try_send(());
    }
}

/// Starts publishing commits and listening for other instances' commits.
pub fn start(url: &str, prefix: &str, wake: Arc<Notify>) -> Result<Publisher, redis::RedisError> {
    let client = crate::redis_client(url)?;
    let channel = format!("{prefix}:events");
    let (doorbell, rings) = mpsc::channel(1);
    tokio::spawn(publish_forever(client.clone(), channel.clone(), rings));
    tokio::spawn(subscribe_forever(client, channel, wake));
    Ok(Publisher { doorbell })
}

async fn publish_forever(client: redis::Client, channel: String, mut rings: mpsc::Receiver<()>) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    while rings.recv().await.is_some() {
        if connection.is_none() {
            let connect = client.get_multiplexed_async_connection();
            connection = tokio::time::timeout(RETRY, connect).await.ok().and_then(Result::ok);
        }
        let Some(conn) = connection.as_mut() else {
            tracing::debug!("redis unreachable: other instances catch up on their next poll");
            continue;
        };
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH").arg(&channel).arg(1).query_async(conn).await;
        if let Err(err) = published {
            tracing::debug!(error = %err, "redis publish failed");
            connection = None;
        }
    }
}

async fn subscribe_forever(client: redis::Client, channel: String, wake: Arc<Notify>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    // Catch up on whatever was published while we were not listening.
                    wake.notify_one();
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        wake.notify_one();
                    }
                }
                tracing::warn!("redis subscription lost; reconnecting");
            }
            Err(err) => tracing::debug!(error = %err, "redis unreachable; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
}
