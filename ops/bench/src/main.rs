//! The storm benchmark. Run it with `ops/bench/run` (which brings the
//! services up and builds the release binaries first).
//!
//! It starts the release `gateway` and `worker` as child processes on a
//! database, Redis prefix and topics of their own, prepares N users in
//! MySQL in bulk, creates a coupon of stock S, opens C keep-alive
//! connections (so that the storm, like the later `/healthz` phase, runs
//! on open ones), fires one claim per user over them at concurrency C,
//! polls every ticket to its end the way the API asks (`poll_after_ms`),
//! and prints what it measured. In the same
//! run it measures this machine's limits with the same client: the
//! gateway's `/healthz` rate, the claim script's raw rate in Redis, raw
//! multi-row inserts into MySQL and the broker's produce rate, and prints
//! each figure as a ratio of its limit, plus the gateway's own CPU time per
//! claim and per `/healthz` (summed over its threads from
//! `/proc/<pid>/task/*/schedstat`), the figure to watch when tuning the
//! claim path on a machine whose cores the client shares, and how the
//! machine's CPU time during the claims split between the gateway, the
//! worker, the bench client, Redis, the broker and MariaDB (during the
//! whole storm, during the sale alone, up to the last 202 answer, read
//! every 10 ms on a thread of its own, and during the `/healthz` phase,
//! read the same way so that both phases carry the readings' cost, which
//! is printed too).
//! Claim latencies are also printed by answer (202
//! joined the line, 410 turned away), for the door opening, the first
//! C answers, when all C connections sent at once, against the rest, and
//! on sale (up to the last 202) against after, with how many 410s the
//! gateway answered without Redis, and which commands took Redis's time
//! while the claims were answered (`INFO commandstats`, read before and
//! after). It also prints the context switches per answer of the client,
//! the gateway and Redis in each phase (a thread that sleeps, voluntary;
//! one preempted, involuntary), which show the client's threads sleeping
//! and waking more often per claim than per `/healthz` (0.5 to 0.9
//! against 0.3 to 0.4 on the forty-fourth VM of `ops/bench/RUNS.md`).
//! The header names the nice value Redis runs at (`ops/services` raises
//! its priority). It checks the invariants afterwards and exits non-zero
//! if one broke.
//!
//! Options (environment): BENCH_USERS (100000), BENCH_STOCK (10000),
//! BENCH_CONCURRENCY (1000), BENCH_RATE (admissions per second, 20000),
//! BENCH_BIN (the release binaries' folder), BENCH_FAULT (none; or worker,
//! gateway, scheduler: kill -9 and restart one second into the storm;
//! broker, mysql: frozen for 10 s). A fault run also runs the scheduler,
//! skips the limit measurements, and prints the time to converge.
//! BENCH_CHILD_LOG sets the children's RUST_LOG (warn); their logs go to
//! the temp directory as bench-<name>.log. BENCH_PROFILE=<folder> records
//! the gateway with `perf record` during the claims and during the
//! `/healthz` phase, into `<folder>/claims.perf.data` and
//! `<folder>/healthz.perf.data` (`ops/bench/profile` turns them into
//! flame graphs).

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use coupon_core::coupons::NewIssue;
use coupon_core::domain::{CouponId, Role, UserId};
use coupon_core::testing::TestEnv;
use coupon_core::{daily, scripts, Config, RedisStore};
use futures::stream::{self, StreamExt};
use gateway::auth::Tokens;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

/// A fault injected one second into the storm (`BENCH_FAULT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Worker,
    Gateway,
    Scheduler,
    Broker,
    Mysql,
}

impl Fault {
    fn parse(v: &str) -> anyhow::Result<Option<Self>> {
        Ok(Some(match v {
            "" | "none" => return Ok(None),
            "worker" => Fault::Worker,
            "gateway" => Fault::Gateway,
            "scheduler" => Fault::Scheduler,
            "broker" => Fault::Broker,
            "mysql" => Fault::Mysql,
            other => {
                bail!("BENCH_FAULT={other:?}: expected worker, gateway, scheduler, broker or mysql")
            }
        }))
    }
}

struct Options {
    fault: Option<Fault>,
    profile: Option<std::path::PathBuf>,
    users: usize,
    stock: usize,
    concurrency: usize,
    rate: usize,
    bin: String,
}

/// A child process that is killed when dropped.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn start(bin: &str, name: &'static str, config: &[(String, String)]) -> anyhow::Result<Self> {
        let log = std::fs::File::create(std::env::temp_dir().join(format!("bench-{name}.log")))?;
        let child = Command::new(format!("{bin}/{name}"))
            .envs(config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("BENCH_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {bin}/{name} (build with cargo build --release)"))?;
        Ok(Self { child })
    }

    /// Peak resident memory (VmHWM), in MB.
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// CPU time used so far by all of its threads (from the scheduler's own
    /// per-thread accounting, in nanoseconds).
    fn cpu_time(&self) -> Duration {
        let nanos: u64 = thread_files(self.child.id(), "schedstat")
            .filter_map(|path| schedstat_nanos(&path))
            .sum();
        Duration::from_nanos(nanos)
    }
}

/// `perf record` on one process for one phase of the run (BENCH_PROFILE);
/// [`Recording::finish`] stops it and waits until its file is written.
struct Recording {
    perf: Child,
    file: std::path::PathBuf,
}

impl Recording {
    fn start(folder: &std::path::Path, phase: &str, pid: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("BENCH_PROFILE: creating {}", folder.display()))?;
        let file = folder.join(format!("{phase}.perf.data"));
        let perf = Command::new("perf")
            .args(["record", "-F", "999", "--call-graph", "dwarf,16384", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("BENCH_PROFILE: starting perf (apt-get install linux-perf)")?;
        Ok(Self { perf, file })
    }

    fn finish(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-INT", &self.perf.id().to_string()])
            .status()?;
        let status = self.perf.wait()?;
        // perf record ends on the SIGINT it was sent by raising it again.
        let stopped = status.success() || status.signal() == Some(2);
        let written = std::fs::metadata(&self.file).is_ok_and(|m| m.len() > 0);
        if !stopped || !written {
            bail!(
                "perf record for {} ended with {status}",
                self.file.display()
            );
        }
        println!("profile: {}", self.file.display());
        Ok(())
    }
}

/// CPU time of whole processes (all threads, exited ones included, from
/// `/proc/<pid>/stat`), to show where the two cores went during the storm.
struct CpuUse {
    parts: Vec<(&'static str, Vec<u32>)>,
    tick: f64,
}

/// One reading of [`CpuUse`]: seconds per part, and the machine's busy
/// seconds in all (from `/proc/stat`).
struct CpuReading {
    parts: Vec<f64>,
    busy: f64,
}

impl CpuUse {
    fn new(parts: Vec<(&'static str, Vec<u32>)>) -> Self {
        let tick = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(100.0);
        Self { parts, tick }
    }

    /// The pids of processes named exactly `name`.
    fn pids_named(name: &str) -> Vec<u32> {
        Command::new("pgrep")
            .args(["-x", name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn seconds(&self, pid: u32) -> f64 {
        // utime and stime are the 14th and 15th fields of the whole line.
        (stat_field(pid, 14).unwrap_or(0.0) + stat_field(pid, 15).unwrap_or(0.0)) / self.tick
    }

    fn read(&self) -> CpuReading {
        let parts = self
            .parts
            .iter()
            .map(|(_, pids)| pids.iter().map(|p| self.seconds(*p)).sum())
            .collect();
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: busy is all but
        // idle and iowait.
        let busy = cpu
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum::<f64>()
            / self.tick;
        CpuReading { parts, busy }
    }

    /// "5.24 s busy (52.4 µs per answer): gateway 1.23 s (41%), ...": the
    /// machine's busy time between two readings, over the `answers` given
    /// meanwhile, and each part's share of it.
    fn describe(&self, before: &CpuReading, after: &CpuReading, answers: usize) -> String {
        let busy = (after.busy - before.busy).max(f64::EPSILON);
        let mut text: Vec<String> = self
            .parts
            .iter()
            .zip(before.parts.iter().zip(&after.parts))
            .map(|((name, _), (b, a))| {
                format!("{name} {:.2} s ({:.0}%)", a - b, 100.0 * (a - b) / busy)
            })
            .collect();
        let known: f64 = before
            .parts
            .iter()
            .zip(&after.parts)
            .map(|(b, a)| a - b)
            .sum();
        text.push(format!(
            "other {:.2} s ({:.0}%)",
            (busy - known).max(0.0),
            100.0 * (busy - known).max(0.0) / busy
        ));
        let per_answer = busy * 1e6 / answers.max(1) as f64;
        format!(
            "{busy:.2} s busy ({per_answer:.1} µs per answer): {}",
            text.join(", ")
        )
    }
}

/// Redis's own time per command since it started (`INFO commandstats`):
/// name, calls, microseconds.
async fn redis_command_time(redis: &RedisStore) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let mut conn = redis.conn().await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            // cmdstat_<name>:calls=<n>,usec=<n>,...
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
            };
            Some((name.to_owned(), field("calls")?, field("usec")?))
        })
        .collect())
}

/// The commands that took Redis the most time between two readings of
/// [`redis_command_time`], most first.
fn describe_redis_time(before: &[(String, u64, u64)], after: &[(String, u64, u64)]) -> String {
    let mut spent: Vec<(&str, u64, u64)> = after
        .iter()
        .map(|(name, calls, usec)| {
            let (c0, u0) = before
                .iter()
                .find(|(n, _, _)| n == name)
                .map_or((0, 0), |(_, c, u)| (*c, *u));
            (
                name.as_str(),
                calls.saturating_sub(c0),
                usec.saturating_sub(u0),
            )
        })
        .filter(|(_, calls, _)| *calls > 0)
        .collect();
    spent.sort_by_key(|s| std::cmp::Reverse(s.2));
    spent
        .iter()
        .take(8)
        .map(|(name, calls, usec)| format!("{name} {:.1} ms ({calls})", *usec as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Readings of a [`CpuUse`] every 10 ms on a thread of its own, each
/// with the time it was taken, until dropped: for the CPU of a phase whose
/// end is known only afterwards (the sale). The readings cost the client
/// CPU (`/proc` is slow to read on some VMs), so the `/healthz` phase is
/// traced too: both measured phases carry the same load, and
/// [`CpuTrace::cost`] tells how much it was.
struct CpuTrace {
    readings: Arc<std::sync::Mutex<Vec<(Duration, CpuReading)>>>,
    stop: Arc<AtomicBool>,
    /// The reading thread's `schedstat`, once it runs.
    schedstat: Arc<std::sync::OnceLock<std::path::PathBuf>>,
}

impl CpuTrace {
    fn start(cpu_use: Arc<CpuUse>, since: Instant) -> Self {
        let readings: Arc<std::sync::Mutex<Vec<(Duration, CpuReading)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let schedstat: Arc<std::sync::OnceLock<std::path::PathBuf>> = Arc::default();
        let (into, stopped, own) = (readings.clone(), stop.clone(), schedstat.clone());
        std::thread::spawn(move || {
            // "/proc/thread-self" links to "<pid>/task/<tid>".
            if let Ok(me) = std::fs::read_link("/proc/thread-self") {
                let _ = own.set(std::path::Path::new("/proc").join(me).join("schedstat"));
            }
            while !stopped.load(Ordering::Relaxed) {
                let reading = cpu_use.read();
                into.lock().expect("lock").push((since.elapsed(), reading));
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            readings,
            stop,
            schedstat,
        }
    }

    /// "412 readings, 38.1 ms of CPU": what the trace took so far.
    fn cost(&self) -> String {
        let cpu_ms = self
            .schedstat
            .get()
            .and_then(|path| schedstat_nanos(path))
            .map_or_else(
                || "unknown".to_owned(),
                |ns| format!("{:.1}", ns as f64 / 1e6),
            );
        format!(
            "{} readings, {cpu_ms} ms of CPU",
            self.readings.lock().expect("lock").len()
        )
    }

    /// The first reading taken at or after `at`, with its time.
    fn at(&self, at: Duration) -> Option<(Duration, CpuReading)> {
        let mut readings = self.readings.lock().expect("lock");
        let i = readings.iter().position(|(t, _)| *t >= at)?;
        Some(readings.swap_remove(i))
    }
}

impl Drop for CpuTrace {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The CPU time in a thread's `schedstat` file (nanoseconds on a CPU, then
/// waiting, then time slices).
fn schedstat_nanos(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The file `name` of each of a process's live threads
/// (`/proc/<pid>/task/<tid>/<name>`); none if the process is gone.
fn thread_files(pid: u32, name: &'static str) -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(move |task| task.path().join(name))
}

/// Context switches of all of a process's live threads so far (from each
/// `/proc/<pid>/task/<tid>/status`): voluntary (the thread slept: waiting
/// for I/O or for a wake-up from another thread) and involuntary (it was
/// preempted).
fn context_switches(pid: u32) -> (u64, u64) {
    let field = |status: &str, name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    thread_files(pid, "status")
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .fold((0, 0), |(v, n), status| {
            (
                v + field(&status, "voluntary_ctxt_switches:"),
                n + field(&status, "nonvoluntary_ctxt_switches:"),
            )
        })
}

/// "bench client 0.41 + 0.12, gateway ...": context switches per answer
/// (voluntary + involuntary) of each process between two readings of
/// [`context_switches`].
fn describe_switches(
    names: &[&str],
    before: &[(u64, u64)],
    after: &[(u64, u64)],
    answers: usize,
) -> String {
    let per = |n: u64| n as f64 / answers.max(1) as f64;
    names
        .iter()
        .zip(before.iter().zip(after))
        .map(|(name, ((v0, n0), (v1, n1)))| {
            format!(
                "{name} {:.2} + {:.2}",
                per(v1.saturating_sub(*v0)),
                per(n1.saturating_sub(*n0))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`, if a number.
fn stat_field(pid: u32, n: usize) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (2nd field, in parentheses) may hold spaces: count from
    // after it, where the 3rd field starts.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

/// The nice value of Redis's command thread (`ops/services` raises it),
/// for the table's header.
fn redis_nice() -> String {
    CpuUse::pids_named("redis-server")
        .first()
        .and_then(|&pid| stat_field(pid, 19))
        .map_or_else(|| "unknown".to_owned(), |n| n.to_string())
}

/// Latencies in microseconds.
struct Latencies(Vec<u64>);

impl Latencies {
    fn pct(&mut self, p: f64) -> f64 {
        self.0.sort_unstable();
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i] as f64 / 1000.0
    }
}

/// Sends `count` requests made by `make` at `concurrency`; returns the
/// rate (per second), the latencies and the statuses, both in the order
/// the answers came.
async fn hammer<F, Fut>(count: usize, concurrency: usize, make: F) -> (f64, Latencies, Vec<u16>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = Instant::now();
    let results: Vec<(u64, u16)> = stream::iter(0..count)
        .map(|i| {
            let request = make(i);
            async move {
                let t = Instant::now();
                let status = request.await;
                (t.elapsed().as_micros() as u64, status)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let (lat, statuses) = results.into_iter().unzip();
    (rate, Latencies(lat), statuses)
}

/// The value of the series `name` (its full name and labels, then a space)
/// in a Prometheus text exposition.
fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.trim().parse::<f64>().ok())
    })
}

/// GET `url` with its body read to the end: the status, or 0 when the
/// request failed.
async fn get_status(http: reqwest::Client, url: String) -> u16 {
    match http.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            r.bytes().await.map_or(0, |_| status)
        }
        Err(_) => 0,
    }
}

fn row(name: &str, ours: f64, unit: &str, limit: f64, target: Option<(f64, bool)>) {
    let ratio = ours / limit;
    let verdict = match target {
        Some((goal, higher_is_better)) => {
            let met = if higher_is_better {
                ratio >= goal
            } else {
                ratio <= goal
            };
            format!(
                "target {}{goal:.2} → {}",
                if higher_is_better { "≥ " } else { "≤ " },
                if met { "met" } else { "MISSED" }
            )
        }
        None => String::new(),
    };
    println!("| {name:<38} | {ours:>12.1} {unit:<6} | {limit:>12.1} | {ratio:>6.2} | {verdict} |");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options {
        fault: Fault::parse(&std::env::var("BENCH_FAULT").unwrap_or_default())?,
        profile: std::env::var_os("BENCH_PROFILE")
            .filter(|v| !v.is_empty())
            .map(Into::into),
        users: env_number("BENCH_USERS", 100_000)?,
        stock: env_number("BENCH_STOCK", 10_000)?,
        concurrency: env_number("BENCH_CONCURRENCY", 1000)?,
        rate: env_number("BENCH_RATE", 20_000)?,
        bin: std::env::var("BENCH_BIN").unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            format!("{target}/release")
        }),
    };
    if options.stock == 0 || options.stock > options.users {
        bail!("BENCH_STOCK must be between 1 and BENCH_USERS");
    }

    // A database, key prefix and topics of its own.
    let port = |p: u16| format!("127.0.0.1:{p}");
    let free =
        || std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().map(|a| a.port()));
    let (gw_port, worker_port) = (free()??, free()??);
    let env = TestEnv::with(&[("ADMISSION_RATE_PER_SEC", &options.rate.to_string())]).await;
    let config: &Config = &env.config;
    let secret = "bench-secret-bench-secret-bench-secret!!";
    let child_env: Vec<(String, String)> = [
        ("DATABASE_URL", config.database_url.expose().to_owned()),
        ("REDIS_URL", config.redis_url.expose().to_owned()),
        ("REDIS_KEY_PREFIX", config.redis_key_prefix.clone()),
        ("KAFKA_BROKERS", config.kafka_brokers.clone()),
        ("KAFKA_TOPIC", config.kafka_topic.clone()),
        ("KAFKA_DLQ_TOPIC", config.kafka_dlq_topic.clone()),
        ("KAFKA_CONSUMER_GROUP", config.kafka_consumer_group.clone()),
        ("KAFKA_PARTITIONS", "6".into()),
        ("JWT_SECRET", secret.into()),
        ("GATEWAY_ADDR", port(gw_port)),
        ("WORKER_METRICS_ADDR", port(worker_port)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let start = |name: &'static str| Process::start(&options.bin, name, &child_env);
    let gateway = Arc::new(std::sync::Mutex::new(start("gateway")?));
    let worker = Arc::new(std::sync::Mutex::new(start("worker")?));
    // The scheduler runs for fault runs: reconciliation repairs what a
    // fault may leave behind.
    let scheduler = match options.fault {
        Some(_) => Some(Arc::new(std::sync::Mutex::new(start("scheduler")?))),
        None => None,
    };
    let base = format!("http://{}", port(gw_port));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ready = Instant::now();
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        if ready.elapsed() > Duration::from_secs(60) {
            bail!(
                "the gateway did not become ready (see {}/bench-gateway.log)",
                std::env::temp_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The persister has joined its consumer group once it reports its lag
    // (a first join takes seconds on the local broker); a storm before
    // that would time the join, not the pipeline.
    let joined = Instant::now();
    loop {
        let metrics = http
            .get(format!("http://{}/metrics", port(worker_port)))
            .send()
            .await;
        let text = match metrics {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.lines().any(|l| l.starts_with("coupon_consumer_lag")) {
            break;
        }
        if joined.elapsed() > Duration::from_secs(60) {
            bail!(
                "the worker's persister did not join its consumer group (see {}/bench-worker.log)",
                std::env::temp_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "persister joined its group {:.1?} after the gateway was ready",
        joined.elapsed()
    );

    // Users in bulk, and their tokens.
    let db = coupon_core::db::connect_lazy(config)?;
    let prepare = Instant::now();
    for chunk in (0..options.users).collect::<Vec<_>>().chunks(2000) {
        let mut q = sqlx::QueryBuilder::new("INSERT INTO `user` (email, name, password_hash) ");
        q.push_values(chunk, |mut b, i| {
            b.push_bind(format!("bench{i}@example.com"))
                .push_bind("Bench")
                .push_bind("-");
        });
        q.build().execute(&db).await?;
    }
    let ids: Vec<u64> = sqlx::query_scalar("SELECT id FROM `user` ORDER BY id")
        .fetch_all(&db)
        .await?;
    let tokens = Tokens::new(secret, Duration::from_secs(3600));
    let users: Arc<Vec<String>> = Arc::new(
        ids.iter()
            .map(|id| tokens.issue(UserId(*id), Role::User))
            .collect::<Result<_, _>>()?,
    );
    let admin = tokens.issue(UserId(0), Role::Admin)?;
    println!(
        "prepared {} users in {:.1?}",
        users.len(),
        prepare.elapsed()
    );

    let now = Utc::now();
    let created: serde_json::Value = http
        .post(format!("{base}/api/admin/coupons"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "title": "Storm", "total_quantity": options.stock,
            "valid_from": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "valid_to": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "admission_rate_per_sec": options.rate,
        }))
        .send()
        .await?
        .json()
        .await?;
    let coupon = CouponId(created["id"].as_u64().context("coupon created")?);

    // Watch rows arrive, to measure the persist rate.
    let rows_db = db.clone();
    let stock = options.stock as i64;
    let rows_watch = tokio::spawn(async move {
        let mut first: Option<Instant> = None;
        loop {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM coupon_issue WHERE coupon_id = ?")
                    .bind(coupon.0)
                    .fetch_one(&rows_db)
                    .await
                    .unwrap_or(0);
            if n > 0 && first.is_none() {
                first = Some(Instant::now());
            }
            if n >= stock {
                return (first.unwrap_or_else(Instant::now), Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // The storm (and the fault, if any, one second into it).
    // Both measured phases run on open connections: the /healthz phase
    // comes after the storm and finds the pool full, so the storm gets the
    // same, rather than paying C connection set-ups in its first requests
    // (1 % of the default run, exactly the p99).
    let (_, _, opened) = hammer(options.concurrency, options.concurrency, |_| {
        get_status(http.clone(), format!("{base}/healthz"))
    })
    .await;
    if opened.iter().any(|s| *s != 200) {
        bail!(
            "opening {} connections to the gateway failed",
            options.concurrency
        );
    }

    let cpu_use = Arc::new(CpuUse::new(vec![
        ("gateway", vec![gateway.lock().expect("lock").child.id()]),
        ("worker", vec![worker.lock().expect("lock").child.id()]),
        ("bench client", vec![std::process::id()]),
        ("Redis", CpuUse::pids_named("redis-server")),
        ("broker", CpuUse::pids_named("tansu")),
        ("MariaDB", CpuUse::pids_named("mariadbd")),
    ]));
    // Whose sleeps and preemptions to count: the client, the gateway and
    // Redis, the three that every claim of the sale passes through.
    let switch_names = ["bench client", "gateway", "Redis"];
    let switch_pids: Vec<u32> = vec![
        std::process::id(),
        gateway.lock().expect("lock").child.id(),
        CpuUse::pids_named("redis-server")
            .first()
            .copied()
            .unwrap_or(0),
    ];
    let read_switches =
        || -> Vec<(u64, u64)> { switch_pids.iter().map(|p| context_switches(*p)).collect() };
    let stats_redis = RedisStore::new(config)?;
    let storm_switches_before = read_switches();
    let redis_time_before = redis_command_time(&stats_redis).await?;
    let storm_cpu_before = cpu_use.read();
    let storm = Instant::now();
    let storm_trace = CpuTrace::start(cpu_use.clone(), storm);
    // When the last 202 came, in microseconds into the storm: the sale's end.
    let last_202 = Arc::new(AtomicU64::new(0));
    let gateway_cpu_before = gateway.lock().expect("lock").cpu_time();
    let fault_done: Arc<std::sync::Mutex<Option<Duration>>> = Arc::default();
    if let Some(fault) = options.fault {
        let (gateway, worker, scheduler) = (gateway.clone(), worker.clone(), scheduler.clone());
        let (bin, child_env, fault_done) =
            (options.bin.clone(), child_env.clone(), fault_done.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let restart = |slot: &std::sync::Mutex<Process>, name: &'static str| {
                let mut process = slot.lock().expect("lock");
                let _ = process.child.kill(); // SIGKILL
                let _ = process.child.wait();
                *process = Process::start(&bin, name, &child_env).expect("restart");
            };
            match fault {
                Fault::Worker => restart(&worker, "worker"),
                Fault::Gateway => restart(&gateway, "gateway"),
                Fault::Scheduler => restart(
                    scheduler.as_deref().expect("scheduler running"),
                    "scheduler",
                ),
                Fault::Broker => pause("tansu broker", Duration::from_secs(10)).await,
                Fault::Mysql => pause("mariadbd", Duration::from_secs(10)).await,
            }
            *fault_done.lock().expect("lock") = Some(storm.elapsed());
        });
    }
    let recording = |phase: &str| -> anyhow::Result<Option<Recording>> {
        match (&options.profile, options.fault) {
            (Some(folder), None) => {
                let pid = gateway.lock().expect("lock").child.id();
                Recording::start(folder, phase, pid).map(Some)
            }
            _ => Ok(None),
        }
    };
    let claims_recording = recording("claims")?;
    let next = AtomicUsize::new(0);
    let tickets: Arc<std::sync::Mutex<Vec<(usize, String)>>> = Arc::default();
    let (claim_rate, mut claim_lat, statuses) = hammer(options.users, options.concurrency, |_| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (http, users, tickets, base, last_202) = (
            http.clone(),
            users.clone(),
            tickets.clone(),
            base.clone(),
            last_202.clone(),
        );
        async move {
            // A client whose connection broke (a gateway restarting) tries
            // again, as a person pressing the button again would.
            let mut attempt = 0;
            let response = loop {
                let sent = http
                    .post(format!("{base}/api/coupons/{}/claim", coupon.0))
                    .bearer_auth(&users[i])
                    .send()
                    .await;
                match sent {
                    Err(_) if attempt < 100 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => break other,
                }
            };
            match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    // Every body is read to its end, as any client does; an
                    // unread body would cost the connection.
                    let Ok(body) = r.bytes().await else {
                        return 0;
                    };
                    if status == 202 {
                        last_202.fetch_max(storm.elapsed().as_micros() as u64, Ordering::Relaxed);
                        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) {
                            if let Some(t) = body["ticket_id"].as_str() {
                                tickets.lock().expect("lock").push((i, t.to_owned()));
                            }
                        }
                    }
                    status
                }
                Err(_) => 0,
            }
        }
    })
    .await;
    let claims_done = storm.elapsed();
    let storm_switches = describe_switches(
        &switch_names,
        &storm_switches_before,
        &read_switches(),
        options.users,
    );
    let storm_cpu = cpu_use.describe(&storm_cpu_before, &cpu_use.read(), options.users);
    let redis_time =
        describe_redis_time(&redis_time_before, &redis_command_time(&stats_redis).await?);
    // Answers up to the last 202: the sale (its CPU is read at most 10 ms
    // after it ended).
    let on_sale = statuses
        .iter()
        .rposition(|s| *s == 202)
        .map_or(0, |i| i + 1);
    let storm_trace_cost = storm_trace.cost();
    let sale_cpu = storm_trace
        .at(Duration::from_micros(last_202.load(Ordering::Relaxed)))
        .map_or_else(
            || "not traced)".to_owned(),
            |(t, r)| {
                format!(
                    "the first {t:.2?} of the storm, up to the last 202): {}",
                    cpu_use.describe(&storm_cpu_before, &r, on_sale)
                )
            },
        );
    drop(storm_trace);
    let gateway_cpu_per_claim = gateway
        .lock()
        .expect("lock")
        .cpu_time()
        .saturating_sub(gateway_cpu_before)
        / options.users as u32;
    claims_recording.map(Recording::finish).transpose()?;

    // Poll every waiting ticket to its end, as the API asks.
    let mut pending = std::mem::take(&mut *tickets.lock().expect("lock"));
    let mut issued = 0usize;
    let mut rejected = 0usize;
    while !pending.is_empty() {
        if storm.elapsed() > Duration::from_secs(300) {
            bail!("{} tickets still not final after 300 s", pending.len());
        }
        let polled: Vec<(usize, String, Option<serde_json::Value>)> = stream::iter(pending)
            .map(|(i, t)| {
                let (http, users, base) = (http.clone(), users.clone(), base.clone());
                async move {
                    let body = async {
                        http.get(format!("{base}/api/tickets/{t}"))
                            .bearer_auth(&users[i])
                            .send()
                            .await
                            .ok()?
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                    }
                    .await;
                    (i, t, body)
                }
            })
            .buffer_unordered(options.concurrency)
            .collect()
            .await;
        pending = Vec::new();
        let mut wait = 5000u64;
        for (i, t, body) in polled {
            match body.as_ref().and_then(|b| b["status"].as_str()) {
                Some("issued") => issued += 1,
                Some("rejected") => rejected += 1,
                _ => {
                    wait = wait.min(
                        body.as_ref()
                            .and_then(|b| b["poll_after_ms"].as_u64())
                            .unwrap_or(500),
                    );
                    pending.push((i, t));
                }
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
    let all_final = storm.elapsed();
    let (first_row, last_row) =
        tokio::time::timeout(Duration::from_secs(300), rows_watch).await??;
    // From the first issue decided in Redis (its issued_at) until the last
    // row was seen: the whole relay, Kafka and persister pipeline, not
    // just the persister's inserts.
    let first_issue: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT MIN(issued_at) FROM coupon_issue WHERE coupon_id = ?")
            .bind(coupon.0)
            .fetch_one(&db)
            .await?;
    let last_row_at = Utc::now() - chrono::Duration::from_std(last_row.elapsed())?;
    let persisted_in = (last_row_at - first_issue)
        .to_std()
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let first_row_after = first_row.saturating_duration_since(storm);
    let persist_rate = options.stock as f64 / persisted_in.as_secs_f64();
    let gateway_rss = gateway.lock().expect("lock").peak_rss_mb();
    let worker_rss = worker.lock().expect("lock").peak_rss_mb();
    // The claim script's throughput inside the storm, from the worker's own
    // metrics: users decided per second spent in claim.lua.
    let worker_metrics = http
        .get(format!("http://{}/metrics", port(worker_port)))
        .send()
        .await?
        .text()
        .await?;
    let metric = |name: &str| metric_value(&worker_metrics, name).unwrap_or(f64::NAN);
    let in_storm_script_rate = metric("coupon_claim_batch_size_sum ")
        / metric("coupon_claim_script_duration_seconds_sum ");

    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    // Latencies by answer: joining the line (202) does more than being
    // turned away (410), and the two phases of the storm differ.
    let by_answer = |s: u16| {
        let mut l = Latencies(
            claim_lat
                .0
                .iter()
                .zip(&statuses)
                .filter(|(_, x)| **x == s)
                .map(|(l, _)| *l)
                .collect(),
        );
        format!("{s}: p50 {:.2}, p99 {:.2}", l.pct(0.5), l.pct(0.99))
    };
    let claim_lat_by_answer = format!("{}; {}", by_answer(202), by_answer(410));
    // The door opening: the first C answers (latencies are in the order
    // the answers came) against the rest.
    let opening = options.concurrency.min(claim_lat.0.len());
    let mut first = Latencies(claim_lat.0[..opening].to_vec());
    let mut rest = Latencies(claim_lat.0[opening..].to_vec());
    let claim_lat_opening = format!(
        "first {opening} answers (all C sent at once): p50 {:.2}, max {:.2}; the rest: p50 {:.2}, p99 {:.2}",
        first.pct(0.5),
        first.pct(1.0),
        rest.pct(0.5),
        rest.pct(0.99)
    );
    // On sale and after: up to the last 202 answer the claims join the
    // line in Redis while the pipeline issues and persists; after it they
    // are turned away, mostly by the gateway alone (`claim::sold_out`).
    let mut sale = Latencies(claim_lat.0[..on_sale].to_vec());
    let mut after = Latencies(claim_lat.0[on_sale..].to_vec());
    let claim_lat_phases = format!(
        "on sale (up to the last 202, {on_sale} answers): p50 {:.2}, p90 {:.2}, p99 {:.2}; after ({}): p50 {:.2}, p99 {:.2}",
        sale.pct(0.5),
        sale.pct(0.9),
        sale.pct(0.99),
        after.0.len(),
        after.pct(0.5),
        after.pct(0.99)
    );
    let gateway_metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let sold_out_in_gateway =
        metric_value(&gateway_metrics, "coupon_claims_sold_out_in_gateway_total ").unwrap_or(0.0);
    let sold_out_at_door = count(410);
    let errors = statuses.len() - count(202) - sold_out_at_door - count(200);

    // Invariants: exactly S rows, nobody twice, everyone else SOLD_OUT,
    // remaining 0 (assert_invariants panics loudly on any break).
    let redis = RedisStore::new(config)?;
    coupon_core::testing::assert_invariants(config, &db, &redis, &[coupon]).await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM coupon_issue WHERE coupon_id = ?")
        .bind(coupon.0)
        .fetch_one(&db)
        .await?;
    let remaining: u32 = sqlx::query_scalar("SELECT remaining_quantity FROM coupon WHERE id = ?")
        .bind(coupon.0)
        .fetch_one(&db)
        .await?;
    let mut broken = Vec::new();
    if rows as usize != options.stock || issued != options.stock {
        broken.push(format!(
            "rows {rows} and issued tickets {issued}, expected {}",
            options.stock
        ));
    }
    if rejected + sold_out_at_door != options.users - options.stock {
        broken.push(format!(
            "{rejected} rejected + {sold_out_at_door} turned away != {}",
            options.users - options.stock
        ));
    }
    if remaining != 0 {
        broken.push(format!("remaining_quantity {remaining}"));
    }
    if errors > 0 {
        broken.push(format!("{errors} claims failed"));
    }

    if let Some(fault) = options.fault {
        let over = fault_done.lock().expect("lock").unwrap_or_default();
        let converged = all_final.max(last_row.saturating_duration_since(storm));
        println!();
        println!(
            "fault run {fault:?}: {} users, stock {}; claims: {} x 202, {} x 410, {} errors; tickets: {issued} issued, {rejected} rejected",
            options.users, options.stock, count(202), sold_out_at_door, errors
        );
        println!(
            "fault over {over:.2?} into the storm; converged (every ticket final, every issue a row) at {converged:.2?}, {:.2?} after the fault",
            converged.saturating_sub(over)
        );
        return verdict(&broken, options.stock, &env).await;
    }

    // This machine's limits, with the same client and concurrency.
    println!(
        "storm over ({claims_done:.2?}); measuring this machine's limits: /healthz, the claim script, MySQL inserts, the broker"
    );
    let healthz_count = options.users.min(100_000);
    let gateway_cpu_before = gateway.lock().expect("lock").cpu_time();
    let healthz_cpu_before = cpu_use.read();
    let healthz_recording = recording("healthz")?;
    let healthz_switches_before = read_switches();
    let healthz_trace = CpuTrace::start(cpu_use.clone(), Instant::now());
    let (healthz_rate, mut healthz_lat, _) = hammer(healthz_count, options.concurrency, |_| {
        get_status(http.clone(), format!("{base}/healthz"))
    })
    .await;
    let healthz_trace_cost = healthz_trace.cost();
    let healthz_switches = describe_switches(
        &switch_names,
        &healthz_switches_before,
        &read_switches(),
        healthz_count,
    );
    drop(healthz_trace);
    let gateway_cpu_per_healthz = gateway
        .lock()
        .expect("lock")
        .cpu_time()
        .saturating_sub(gateway_cpu_before)
        / healthz_count as u32;
    let healthz_cpu = cpu_use.describe(&healthz_cpu_before, &cpu_use.read(), healthz_count);
    healthz_recording.map(Recording::finish).transpose()?;
    let healthz_opening_max =
        Latencies(healthz_lat.0[..options.concurrency.min(healthz_lat.0.len())].to_vec()).pct(1.0);
    let script_rate = raw_claim_script_rate(config).await?;
    let insert_rate = raw_insert_rate(&db).await?;
    let produce_rate = raw_produce_rate(config).await?;
    let redis_per_user = redis_bytes_per_waiting_user(config, 50_000).await?;
    drop(scheduler);
    drop(worker);
    drop(gateway);

    println!();
    println!(
        "storm: {} users, stock {}, concurrency {}, admission rate {}/s, {} cores, Redis at nice {}",
        options.users,
        options.stock,
        options.concurrency,
        options.rate,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        redis_nice()
    );
    println!("claims: {} x 202, {} x 410 at the door, {} errors; tickets: {issued} issued, {rejected} rejected", count(202), sold_out_at_door, errors);
    println!("claims answered in {claims_done:.2?}; every ticket final after {all_final:.2?}; {} rows persisted {persisted_in:.2?} after the first issue (first row {first_row_after:.2?} into the storm)", options.stock);
    println!(
        "claim latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        claim_lat.pct(0.5),
        claim_lat.pct(0.9),
        claim_lat.pct(0.99),
        claim_lat.pct(1.0)
    );
    println!("claim latency ms by answer: {claim_lat_by_answer}");
    println!("claim latency ms, {claim_lat_opening}");
    println!("claim latency ms, {claim_lat_phases}; 410s answered by the gateway without Redis: {sold_out_in_gateway}");
    println!(
        "/healthz latency ms: p50 {:.2}, p99 {:.2}; first {} answers: max {healthz_opening_max:.2}",
        healthz_lat.pct(0.5),
        healthz_lat.pct(0.99),
        options.concurrency.min(healthz_count)
    );
    // The p99 target as a count: at most this many claims may be slower.
    let bound_ms = 1.5 * healthz_lat.pct(0.99);
    let slower = |l: &Latencies| {
        l.0.iter()
            .filter(|us| **us as f64 / 1000.0 > bound_ms)
            .count()
    };
    println!(
        "claims slower than 1.5 x the /healthz p99 ({bound_ms:.1} ms): {} (the p99 target allows {}): {} of the {} on sale, {} of the {} after",
        slower(&claim_lat),
        claim_lat.0.len() - (claim_lat.0.len() as f64 * 0.99).ceil() as usize,
        slower(&sale),
        sale.0.len(),
        slower(&after),
        after.0.len()
    );
    println!(
        "gateway CPU per request (all threads): claim {:.1} µs, /healthz {:.1} µs",
        gateway_cpu_per_claim.as_secs_f64() * 1e6,
        gateway_cpu_per_healthz.as_secs_f64() * 1e6
    );
    println!(
        "CPU while the claims were answered ({claims_done:.2?} on {} cores): {storm_cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("CPU while on sale ({sale_cpu}");
    println!("Redis time by command while the claims were answered (calls; a script's commands count in evalsha and on their own): {redis_time}");
    println!("CPU while /healthz was answered: {healthz_cpu}");
    println!("context switches per answer (voluntary + involuntary): claims: {storm_switches}; /healthz: {healthz_switches}");
    println!("the bench's own CPU readings every 10 ms, in both phases alike: claims {storm_trace_cost}, /healthz {healthz_trace_cost}");
    println!("peak RSS: gateway {gateway_rss:.1} MB, worker {worker_rss:.1} MB; Redis {redis_per_user:.0} bytes per waiting user");
    println!();
    println!("| figure                                 | ours                |        limit |  ratio | target |");
    println!("| -------------------------------------- | ------------------- | ------------ | ------ | ------ |");
    row(
        "claim rate vs /healthz rate",
        claim_rate,
        "req/s",
        healthz_rate,
        Some((0.6, true)),
    );
    row(
        "claim p99 vs /healthz p99 (ms)",
        claim_lat.pct(0.99),
        "ms",
        healthz_lat.pct(0.99),
        Some((1.5, false)),
    );
    row(
        "claim script in the storm vs raw",
        in_storm_script_rate,
        "user/s",
        script_rate,
        Some((0.5, true)),
    );
    let tighter = insert_rate.min(produce_rate);
    row(
        "persisted rows vs min(insert, produce)",
        persist_rate,
        "row/s",
        tighter,
        Some((0.5, true)),
    );
    row(
        "raw MySQL insert (500-row batches)",
        insert_rate,
        "row/s",
        insert_rate,
        None,
    );
    row(
        "raw broker produce (1 msg per batch)",
        produce_rate,
        "msg/s",
        produce_rate,
        None,
    );
    println!();
    println!(
        "all tickets final within 30 s: {}",
        if all_final <= Duration::from_secs(30) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "gateway RSS under 200 MB: {}",
        if gateway_rss < 200.0 { "met" } else { "MISSED" }
    );
    verdict(&broken, options.stock, &env).await
}

/// Passes, removing the run's database and Redis keys, or fails, keeping
/// them to look at.
async fn verdict(broken: &[String], stock: usize, env: &TestEnv) -> anyhow::Result<()> {
    if broken.is_empty() {
        println!("invariants: hold (exactly {stock} rows, no duplicates, everyone else SOLD_OUT, remaining 0)");
        env.clean_up().await
    } else {
        bail!(
            "INVARIANTS BROKEN: {} (kept for inspection: database {}, Redis prefix {})",
            broken.join("; "),
            env.config.database_name(),
            env.config.redis_key_prefix
        )
    }
}

/// Users decided per second by `claim.lua` called back to back with
/// 500-user batches on a scratch coupon (no HTTP, no rate limit).
async fn raw_claim_script_rate(config: &Config) -> anyhow::Result<f64> {
    let mut scratch = config.clone();
    scratch.redis_key_prefix = format!("{}scratch:", config.redis_key_prefix);
    let redis = RedisStore::new(&scratch)?;
    let total = 100_000u32;
    coupon_core::testing::redis_coupon(&redis, 1, total, 1).await;
    let keys = scripts::CouponKeys::new(redis.keys(), CouponId(1));
    let day = daily::day_of(Utc::now(), config.daily_limit_tz);
    let mut conn = redis.conn().await?;
    let batches: Vec<Vec<UserId>> = (0..total as u64)
        .map(UserId)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(<[UserId]>::to_vec)
        .collect();
    for batch in &batches {
        let mut pipe = redis::pipe();
        for (n, user) in batch.iter().enumerate() {
            pipe.zadd(&keys.admitted, user.0, n).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    let started = Instant::now();
    let decided: usize = stream::iter(&batches)
        .map(|batch| {
            let redis = redis.clone();
            let day = day.clone();
            async move {
                scripts::claim(&redis, CouponId(1), batch, &day, 1, 0)
                    .await
                    .map(|claimed| claimed.decided.len())
                    .unwrap_or(0)
            }
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    Ok(decided as f64 / started.elapsed().as_secs_f64())
}

/// Rows per second into a table shaped like `coupon_issue` (same keys;
/// `CREATE TABLE ... LIKE` copies no foreign keys), 500 per insert.
async fn raw_insert_rate(db: &sqlx::MySqlPool) -> anyhow::Result<f64> {
    sqlx::query("CREATE TABLE bench_issue LIKE coupon_issue")
        .execute(db)
        .await?;
    let rows: Vec<NewIssue> = (0..100_000u64)
        .map(|i| NewIssue {
            coupon: CouponId(1 + i % 3),
            user: UserId(i),
            issued_at: Utc::now(),
        })
        .collect();
    let started = Instant::now();
    let chunks: Vec<&[NewIssue]> = rows.chunks(500).collect();
    stream::iter(chunks)
        .map(|chunk| async move {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT IGNORE INTO bench_issue (user_id, coupon_id, issued_at) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.user.0)
                    .push_bind(r.coupon.0)
                    .push_bind(r.issued_at.naive_utc());
            });
            q.build().execute(db).await.map(|r| r.rows_affected())
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}

/// Messages per second with the relay's producer settings.
async fn raw_produce_rate(config: &Config) -> anyhow::Result<f64> {
    let producer: FutureProducer = coupon_core::kafka::producer_config(config).create()?;
    let payload = vec![b'x'; 200];
    let count = 5000usize;
    let started = Instant::now();
    let results = stream::iter(0..count)
        .map(|i| {
            let producer = producer.clone();
            let payload = payload.clone();
            let topic = config.kafka_dlq_topic.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(&topic)
                            .key(&i.to_string())
                            .payload(&payload),
                        Duration::from_secs(10),
                    )
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(1000)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    Ok(results as f64 / started.elapsed().as_secs_f64())
}

/// Redis memory a waiting user costs: used_memory before and after `n`
/// users join a scratch coupon's line.
async fn redis_bytes_per_waiting_user(config: &Config, n: u64) -> anyhow::Result<f64> {
    let mut scratch = config.clone();
    scratch.redis_key_prefix = format!("{}memory:", config.redis_key_prefix);
    let redis = RedisStore::new(&scratch)?;
    coupon_core::testing::redis_coupon(&redis, 1, 10, 1).await;
    let mut conn = redis.conn().await?;
    // The exact size of every key under the scratch prefix (MEMORY USAGE
    // with SAMPLES 0), so nothing else going on in Redis counts.
    let pattern = format!("{}*", scratch.redis_key_prefix);
    let mut footprint = async || -> anyhow::Result<f64> {
        // SCAN, not KEYS: KEYS held Redis for 25 ms per call.
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page) = RedisStore::scan_page(&mut conn, &pattern, cursor, 5000).await?;
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may name a key twice.
        keys.sort_unstable();
        keys.dedup();
        let mut bytes = 0.0;
        for key in keys {
            let size: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut conn)
                .await?;
            bytes += size.unwrap_or(0) as f64;
        }
        Ok(bytes)
    };
    let before = footprint().await?;
    let day = daily::day_of(Utc::now(), config.daily_limit_tz);
    let now = Utc::now().timestamp_millis();
    stream::iter(0..n)
        .map(|u| {
            let redis = redis.clone();
            let day = day.label.clone();
            async move {
                scripts::enqueue(&redis, CouponId(1), UserId(u), &day, now, 1)
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(256)
        .count()
        .await;
    let after = footprint().await?;
    Ok((after - before) / n as f64)
}

/// Freezes the process named `pattern` (SIGSTOP) for `pause`, then lets it
/// go on (SIGCONT): an outage that keeps the service's data, as a network
/// partition or a stalled host would.
async fn pause(pattern: &str, pause: Duration) {
    let pids = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let pids: Vec<String> = pids
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(!pids.is_empty(), "no process matches {pattern:?}");
    let signal = |sig: &str| {
        for pid in &pids {
            let _ = Command::new("kill").args([sig, pid]).status();
        }
    };
    signal("-STOP");
    tokio::time::sleep(pause).await;
    signal("-CONT");
}
