//! Loopback ports for the servers a test starts.

/// A port on 127.0.0.1 that was free a moment ago: the OS picks it, the listener
/// is closed at once, and the caller's server binds it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("local address")
        .port()
}
