/// glibc's malloc showed as a fifth of the gateway's CPU in the storm
/// profile (large, short-lived request futures); mimalloc is far cheaper.
/// It is built without transparent huge pages (`coupon_core::process`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use gateway::{AppState, Application};

#[tokio::main]
async fn main() {
    coupon_core::process::main("gateway", |config, shutdown| async move {
        let state = AppState::new(config)?;
        gateway::startup::prepare(&state).await?;
        Application::bind(state)
            .await?
            .run_until_stopped(shutdown)
            .await?;
        Ok(())
    })
    .await;
}
