/// glibc's malloc showed as a fifth of the gateway's CPU in the storm
/// profile (large, short-lived request futures); mimalloc is far cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    coupon_core::process::main("worker", worker::run).await;
}
