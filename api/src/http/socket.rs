//! A server-side WebSocket on its TCP stream, holding no buffer while idle.
//!
//! actix-http's HTTP/1 dispatcher keeps an 8 KiB read and an 8 KiB write
//! buffer for as long as a connection lives, upgraded or not, and a phone's
//! subscription socket idles for hours. So upgraded connections leave the
//! dispatcher (see `upgrade`) and are served here: a message is read into a
//! buffer that exists only while it arrives, and the frames sent are written
//! out before the socket waits again.

use std::{io, time::Duration};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseReason, Codec, Frame, Item, Message, ProtocolError};
use actix_web::web::{Bytes, BytesMut};
use tokio::{io::AsyncWriteExt, net::TcpStream};

/// Room added to the read buffer before each read.
const READ_CHUNK: usize = 4096;

/// A whole message from the client, its fragments joined.
pub enum Incoming {
    Text(Bytes),
    Binary,
    Ping(Bytes),
    Pong,
    Close,
}

pub struct Socket {
    stream: TcpStream,
    codec: Codec,
    received: BytesMut,
    /// A message arriving in fragments: whether it is text, and its parts so far.
    fragments: Option<(bool, BytesMut)>,
    max_message_bytes: usize,
    /// Frames queued and not yet written; no room while there are none.
    unsent: BytesMut,
    /// A send failed or was cut off inside a frame: nothing more can be sent.
    broken: bool,
    /// The client's close frame has arrived.
    closed_by_client: bool,
}

impl Socket {
    /// `received` is what the client sent after its handshake, already read.
    pub fn new(stream: TcpStream, received: &[u8], max_message_bytes: usize) -> Self {
        Self {
            stream,
            codec: Codec::new().max_size(max_message_bytes),
            received: BytesMut::from(received),
            fragments: None,
            max_message_bytes,
            unsent: BytesMut::new(),
            broken: false,
            closed_by_client: false,
        }
    }

    /// The next whole message, or `None` once the client has gone. Cancel-safe:
    /// what was read stays in the socket for the next call.
    pub async fn next_message(&mut self) -> Option<Result<Incoming, ProtocolError>> {
        loop {
            match self.codec.decode(&mut self.received) {
                Ok(Some(frame)) => match self.assemble(frame) {
                    Ok(Some(message)) => return Some(Ok(message)),
                    Ok(None) => continue,
                    Err(err) => return Some(Err(err)),
                },
                Ok(None) => {}
                Err(err) => return Some(Err(err)),
            }
            if self.received.is_empty() {
                // Between messages a socket keeps no room to read into.
                self.received = BytesMut::new();
            }
            if let Err(err) = self.stream.readable().await {
                return Some(Err(err.into()));
            }
            self.received.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.received) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Some(Err(err.into())),
            }
        }
    }

    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, ProtocolError> {
        let message = match frame {
            Frame::Text(text) => Incoming::Text(text),
            Frame::Binary(_) => Incoming::Binary,
            Frame::Ping(payload) => Incoming::Ping(payload),
            Frame::Pong(_) => Incoming::Pong,
            Frame::Close(_) => {
                self.closed_by_client = true;
                Incoming::Close
            }
            Frame::Continuation(Item::FirstText(part)) => return self.begin(true, &part),
            Frame::Continuation(Item::FirstBinary(part)) => return self.begin(false, &part),
            Frame::Continuation(Item::Continue(part)) => {
                self.append(&part)?;
                return Ok(None);
            }
            Frame::Continuation(Item::Last(part)) => {
                self.append(&part)?;
                match self.fragments.take() {
                    Some((true, text)) => Incoming::Text(text.freeze()),
                    Some((false, _)) => Incoming::Binary,
                    None => return Err(ProtocolError::ContinuationNotStarted),
                }
            }
        };
        Ok(Some(message))
    }

    fn begin(&mut self, is_text: bool, part: &[u8]) -> Result<Option<Incoming>, ProtocolError> {
        if self.fragments.is_some() {
            return Err(ProtocolError::ContinuationStarted);
        }
        self.fragments = Some((is_text, BytesMut::from(part)));
        Ok(None)
    }

    fn append(&mut self, part: &[u8]) -> Result<(), ProtocolError> {
        let (_, parts) = self.fragments.as_mut().ok_or(ProtocolError::ContinuationNotStarted)?;
        if parts.len() + part.len() > self.max_message_bytes {
            return Err(ProtocolError::Overflow);
        }
        parts.extend_from_slice(part);
        Ok(())
    }

    /// Sends one message, with any queued before it. A client that has not
    /// taken them within `within` is given up on, and the socket can send
    /// nothing more.
    pub async fn send(&mut self, message: Message, within: Duration) -> io::Result<()> {
        self.queue(message)?;
        self.flush(within).await
    }

    /// Adds a message to those [`Socket::flush`] writes.
    pub fn queue(&mut self, message: Message) -> io::Result<()> {
        self.codec.encode(message, &mut self.unsent).map_err(io::Error::other)
    }

    /// The bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.unsent.len()
    }

    /// Writes the queued messages, in one system call when the client is
    /// keeping up, as [`Socket::send`] does.
    pub async fn flush(&mut self, within: Duration) -> io::Result<()> {
        let unsent = std::mem::take(&mut self.unsent);
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let written = tokio::time::timeout(within, self.stream.write_all(&unsent))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        self.broken = written.is_err();
        written
    }

    /// Ends the conversation with a close frame, then ends the connection, as
    /// the server should (RFC 6455, 7.1.1): at once if the client has closed
    /// already, otherwise on its answering close frame (waited for at most
    /// `within`), so that what it sends meanwhile does not reset the connection
    /// before it has read the reason.
    pub async fn close(mut self, reason: Option<CloseReason>, within: Duration) {
        if self.send(Message::Close(reason), within).await.is_err() || self.closed_by_client {
            return;
        }
        let _ = tokio::time::timeout(within, async {
            while let Some(Ok(message)) = self.next_message().await {
                if matches!(message, Incoming::Close) {
                    break;
                }
            }
        })
        .await;
    }
}
