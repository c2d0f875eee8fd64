//! `drover version`.

use client::Client;

/// Print the client's version and the server's (or `unreachable`).
pub async fn run(client: &Client) -> anyhow::Result<()> {
    println!("Client version: {}", env!("CARGO_PKG_VERSION"));
    match client.server().await {
        Ok(s) if !s.environment.server_version.is_empty() => {
            println!("Server version: {}", s.environment.server_version)
        }
        Ok(_) | Err(_) => println!("Server version: unreachable"),
    }
    Ok(())
}
