#[tokio::main]
async fn main() {
    coupon_core::process::main("scheduler", scheduler::run).await;
}
