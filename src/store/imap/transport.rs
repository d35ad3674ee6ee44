//! The byte stream under the IMAP parser: plain TCP, or TLS over TCP, either of them possibly
//! compressed (COMPRESS=DEFLATE, RFC 4978: raw deflate both ways, each command flushed with a
//! sync flush so the server can read it whole).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::DeflateDecoder;
use async_compression::tokio::write::DeflateEncoder;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

#[derive(Debug)]
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Deflate(Box<Deflate>),
}

/// A transport with deflate on top, both directions.
#[derive(Debug)]
pub struct Deflate {
    reader: DeflateDecoder<BufReader<ReadHalf<Transport>>>,
    writer: DeflateEncoder<WriteHalf<Transport>>,
}

impl Transport {
    /// The same stream, compressed from now on.
    pub fn deflate(self) -> Transport {
        let (read, write) = tokio::io::split(self);
        let mut reader = DeflateDecoder::new(BufReader::new(read));
        // The server's stream is one endless deflate stream, not several members.
        reader.multiple_members(false);
        Transport::Deflate(Box::new(Deflate {
            reader,
            writer: DeflateEncoder::new(write),
        }))
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Deflate(s) => Pin::new(&mut s.reader).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Deflate(s) => Pin::new(&mut s.writer).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            // A sync flush: everything written so far can be decompressed by the server.
            Transport::Deflate(s) => Pin::new(&mut s.writer).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Deflate(s) => Pin::new(&mut s.writer).poll_shutdown(cx),
        }
    }
}
