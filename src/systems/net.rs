//! TCP helpers the built-in clients share: connections with connect, read and write timeouts, from
//! any or from a chosen local address (the cluster's control address, which partitions never cut).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A TCP connection with connect, read and write timeouts.
pub fn connect(address: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    configure(&stream, timeout)?;
    Ok(stream)
}

/// `connect` from a given local address (e.g. the cluster's control address).
pub fn connect_from(local: std::net::IpAddr, address: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(address), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&address.into(), timeout)?;
    let stream: TcpStream = socket.into();
    configure(&stream, timeout)?;
    Ok(stream)
}

fn configure(stream: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)
}
