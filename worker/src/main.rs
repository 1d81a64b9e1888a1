/// glibc's malloc showed as a fifth of the gateway's CPU in the storm
/// profile (large, short-lived request futures); mimalloc is far cheaper.
/// It is built without transparent huge pages (`coupon_core::process`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    coupon_core::process::main("worker", worker::run).await;
}
