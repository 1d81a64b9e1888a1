#[tokio::main]
async fn main() {
    coupon_core::process::main("worker", worker::run).await;
}
