use clap::Parser;

// glibc's allocator spent a third of a busy server's time in malloc and free,
// contended by SQLite's and the runtime's threads; mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: api::allocator::Mimalloc = api::allocator::Mimalloc;

/// The property-management customer-service GraphQL server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Load the demo community, buildings, units and accounts (once) and print the accounts.
    #[arg(long)]
    demo: bool,
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let settings = api::config::Settings::from_env()?;
    api::telemetry::init(&settings);
    tracing::info!(?settings, "starting");
    // SAFETY: no thread has used SQLite yet; this one is the first to, below.
    unsafe { api::allocator::route_sqlite_allocations() };

    let db = api::connect_database(&settings).await?;
    if cli.demo {
        let accounts = api::demo::seed(&db).await?;
        println!("\nDemo accounts (phone / password {}):", api::demo::DEMO_PASSWORD);
        for account in &accounts {
            println!("  {:<24} {}", account.label, account.phone);
        }
    }
    let app = api::app_context(db, settings).await?;
    api::jobs::spawn(app.clone());
    let running = api::serve(app.clone())?;
    println!("\nGraphiQL: http://{}/graphql\n", running.addr);
    let handle = running.server.handle();
    let server = tokio::spawn(running.server);
    stop_requested().await;
    tracing::info!("stopping: closing WebSockets, finishing requests in flight");
    app.begin_shutdown();
    // Stops accepting, then waits for requests in flight (at most the
    // shutdown timeout) before the workers exit.
    handle.stop(true).await;
    server.await??;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM (from an orchestrator) or Ctrl-C.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
