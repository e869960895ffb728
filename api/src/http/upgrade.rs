//! Requests to upgrade the connection. actix-http hands them, with the
//! connection itself, to this service instead of its HTTP/1 dispatcher. They
//! are routed through the same app as every other request, so the same
//! logging, rate limits and refusals apply; an accepted WebSocket then runs on
//! the bare connection, and the dispatcher's buffers are freed (see `socket`).

use std::rc::Rc;

use actix_codec::{Framed, FramedParts};
use actix_http::{ConnectionType, Request, Response, StatusCode, body::BodySize, h1};
use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
};
use futures_util::SinkExt;
use tokio::net::TcpStream;

use super::ws::Accepted;

/// Answers one upgrade request with the app's response, then serves the
/// WebSocket if the app accepted one.
pub async fn answer<S, B>(
    routes: Rc<S>,
    request: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    // Boxed: the app's future is large, and it is done with before the
    // conversation that follows, which lasts as long as the socket.
    let (_, mut response) = Box::pin(routes.call(request)).await?.into_parts();
    let accepted = response.extensions_mut().remove::<Accepted>();
    let (head, body) = response.into_parts();
    let mut head: Response<()> = head.into();
    match accepted {
        Some(accepted) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
            framed.send(h1::Message::Item((head, BodySize::None))).await?;
            let FramedParts { io, read_buf, .. } = framed.into_parts();
            let conversation = accepted.serve(io, &read_buf);
            // The dispatcher's read buffer: what is left of it was copied.
            drop(read_buf);
            conversation.await;
        }
        _ => {
            // A refused upgrade ends the connection: what the client sent
            // after its request is not HTTP.
            head.head_mut().set_connection_type(ConnectionType::Close);
            let body = actix_web::body::to_bytes(body).await.map_err(|err| {
                let err: Box<dyn std::error::Error> = err.into();
                actix_web::error::ErrorInternalServerError(format!("answering an upgrade request: {err}"))
            })?;
            let length = u64::try_from(body.len()).unwrap_or(u64::MAX);
            framed.send(h1::Message::Item((head, BodySize::Sized(length)))).await?;
            framed.send(h1::Message::Chunk(Some(body))).await?;
        }
    }
    Ok(())
}
