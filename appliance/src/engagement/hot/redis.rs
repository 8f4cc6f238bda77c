//! Redis hot state. Every multi-step operation is one Lua script, so it is
//! atomic however many processes share the server; counters live in one
//! hash so a flush is a `RENAME` (never a key scan). Keys carry the `{hot}`
//! hash tag where several are touched together, so the scripts also run on
//! Redis Cluster.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{Counts, HotStore, KeyState, Taken};
use crate::error::{Error, Result};

const COUNTS: &str = "{hot}:counts";
const FLUSHING: &str = "{hot}:counts:flushing";
pub const STATUS_CHANNEL: &str = "appliance:status";
/// Users' notifications, for the SSE streams of every process
/// (`notifications::fanout`).
pub const NOTIFICATIONS_CHANNEL: &str = "appliance:notifications";

/// Moves the live counters aside for a flush, unless an unfinished flush is
/// still there (then that one is handed out again).
const TAKE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  redis.call('RENAME', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[2], '__id', ARGV[1])
end
return redis.call('HGETALL', KEYS[2])
"#;

/// Deletes the flushed counters only if they are the ones this flush took.
const FINISH: &str = r#"
if redis.call('HGET', KEYS[1], '__id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Sliding-window log: at most ARGV[3] entries in the last ARGV[2] ms.
/// Returns 0 when allowed (and recorded), else ms until a slot frees up.
const RATE: &str = r#"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"#;

#[derive(Serialize, Deserialize)]
struct IdemRecord {
    #[serde(rename = "f")]
    fingerprint: String,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

pub struct Redis {
    client: redis::Client,
    url: String,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
    take: redis::Script,
    finish: redis::Script,
    rate: redis::Script,
}

fn err(op: &'static str) -> impl FnOnce(redis::RedisError) -> Error {
    Error::hot(op)
}

impl Redis {
    /// Does not connect: a Redis that is down at start-up is the same
    /// degraded case as one that goes down later.
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("hot.redis_url {url:?}: {e}")))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            timeout,
            conn: Mutex::new(None),
            take: redis::Script::new(TAKE),
            finish: redis::Script::new(FINISH),
            rate: redis::Script::new(RATE),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn conn(&self) -> Result<ConnectionManager> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let c = tokio::time::timeout(
            self.timeout,
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await
        .map_err(|_| {
            Error::hot("connecting")(format!(
                "no answer from {} within {:?}",
                self.url, self.timeout
            ))
        })?
        .map_err(err("connecting"))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    fn key(scope: &str, key: &str) -> String {
        format!("idem:{scope}:{key}")
    }

    /// Sends `payload` to every process subscribed to `channel`.
    pub async fn publish_to(&self, channel: &str, payload: &str) -> Result<()> {
        let mut c = self.conn().await?;
        c.publish::<_, _, ()>(channel, payload)
            .await
            .map_err(err("publishing"))
    }
}

#[async_trait]
impl HotStore for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn add(&self, deltas: &HashMap<String, Counts>) -> Result<()> {
        let mut c = self.conn().await?;
        let mut p = redis::pipe();
        for (video, d) in deltas {
            for (f, v) in Counts::FIELDS.iter().zip(d.values()) {
                if v != 0 {
                    p.hincr(COUNTS, format!("{video}|{f}"), v).ignore();
                }
            }
        }
        p.query_async::<()>(&mut c).await.map_err(err("counting"))
    }

    async fn pending(&self, video: &str) -> Result<Counts> {
        let mut c = self.conn().await?;
        let fields: Vec<String> = Counts::FIELDS
            .iter()
            .map(|f| format!("{video}|{f}"))
            .collect();
        let (live, flushing): (Vec<Option<i64>>, Vec<Option<i64>>) = redis::pipe()
            .cmd("HMGET")
            .arg(COUNTS)
            .arg(&fields)
            .cmd("HMGET")
            .arg(FLUSHING)
            .arg(&fields)
            .query_async(&mut c)
            .await
            .map_err(err("reading counters"))?;
        let mut v = [0i64; 5];
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = live.get(i).copied().flatten().unwrap_or(0)
                + flushing.get(i).copied().flatten().unwrap_or(0);
        }
        Ok(Counts::from_values(v))
    }

    async fn take(&self) -> Result<Option<Taken>> {
        let mut c = self.conn().await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let flat: Vec<String> = self
            .take
            .key(COUNTS)
            .key(FLUSHING)
            .arg(&id)
            .invoke_async(&mut c)
            .await
            .map_err(err("taking counters"))?;
        if flat.is_empty() {
            return Ok(None);
        }
        let mut taken = Taken {
            id: String::new(),
            counts: HashMap::new(),
        };
        for pair in flat.chunks_exact(2) {
            let (field, value) = (&pair[0], &pair[1]);
            if field == "__id" {
                taken.id = value.clone();
                continue;
            }
            let Some((video, f)) = field.rsplit_once('|') else {
                continue;
            };
            let Some(i) = Counts::FIELDS.iter().position(|x| *x == f) else {
                continue;
            };
            let n: i64 = value.parse().unwrap_or(0);
            let mut v = taken
                .counts
                .get(video)
                .copied()
                .unwrap_or_default()
                .values();
            v[i] += n;
            taken
                .counts
                .insert(video.to_owned(), Counts::from_values(v));
        }
        Ok(Some(taken))
    }

    async fn finish_take(&self, id: &str) -> Result<()> {
        let mut c = self.conn().await?;
        self.finish
            .key(FLUSHING)
            .arg(id)
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(err("finishing a counter flush"))
    }

    async fn rate(&self, key: &str, limit: u32, window_ms: i64, now: i64) -> Result<Option<i64>> {
        let mut c = self.conn().await?;
        let member = uuid::Uuid::new_v4().simple().to_string();
        let wait: i64 = self
            .rate
            .key(format!("rl:{key}"))
            .arg(now)
            .arg(window_ms)
            .arg(limit)
            .arg(member)
            .invoke_async(&mut c)
            .await
            .map_err(err("rate limiting"))?;
        Ok((wait > 0).then_some(wait))
    }

    async fn idem_claim(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        in_flight: Duration,
    ) -> Result<KeyState> {
        let mut c = self.conn().await?;
        let k = Self::key(scope, key);
        let rec = serde_json::to_string(&IdemRecord {
            fingerprint: fingerprint.to_owned(),
            status: None,
            body: None,
        })
        .expect("serialises");
        // A claim whose process died expires on its own after `in_flight`.
        for _ in 0..3 {
            let set: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(&rec)
                .arg("NX")
                .arg("PX")
                .arg(in_flight.as_millis() as u64)
                .query_async(&mut c)
                .await
                .map_err(err("claiming an idempotency key"))?;
            if set.is_some() {
                return Ok(KeyState::New);
            }
            let Some(existing) = c
                .get::<_, Option<String>>(&k)
                .await
                .map_err(err("reading an idempotency key"))?
            else {
                continue; // expired in between: try to claim again
            };
            let r: IdemRecord = serde_json::from_str(&existing)
                .map_err(|e| Error::hot("reading an idempotency key")(e))?;
            if r.fingerprint != fingerprint {
                return Ok(KeyState::OtherRequest);
            }
            return Ok(match (r.status, r.body) {
                (Some(status), body) => KeyState::Done {
                    status,
                    body: base64::engine::general_purpose::STANDARD
                        .decode(body.unwrap_or_default())
                        .unwrap_or_default(),
                },
                (None, _) => KeyState::InFlight,
            });
        }
        Ok(KeyState::InFlight)
    }

    async fn idem_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &[u8],
        keep: Duration,
    ) -> Result<()> {
        let mut c = self.conn().await?;
        let k = Self::key(scope, key);
        // Only the request holding the claim finishes it: the claim's
        // fingerprint is carried over.
        let claim: Option<String> = c.get(&k).await.map_err(err("reading an idempotency key"))?;
        let fingerprint = claim
            .and_then(|c| serde_json::from_str::<IdemRecord>(&c).ok())
            .map(|r| r.fingerprint)
            .unwrap_or_default();
        let rec = serde_json::to_string(&IdemRecord {
            fingerprint,
            status: Some(status),
            body: Some(base64::engine::general_purpose::STANDARD.encode(body)),
        })
        .expect("serialises");
        c.pset_ex::<_, _, ()>(k, rec, keep.as_millis() as u64)
            .await
            .map_err(err("recording an idempotent response"))
    }

    async fn idem_drop(&self, scope: &str, key: &str) -> Result<()> {
        let mut c = self.conn().await?;
        c.del::<_, ()>(Self::key(scope, key))
            .await
            .map_err(err("releasing an idempotency key"))
    }

    async fn publish(&self, payload: &str) -> Result<()> {
        self.publish_to(STATUS_CHANNEL, payload).await
    }

    async fn ping(&self) -> Result<()> {
        let mut c = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(err("ping"))
    }
}

#[cfg(test)]
mod tests {
    //! Against a real `redis-server` (scripts/setup installs it), started
    //! here on a free loopback port.
    use super::*;

    struct Server(std::process::Child, u16);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn server() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run scripts/setup");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server(child, port)
    }

    #[tokio::test]
    async fn contract_on_a_real_redis() {
        let s = server();
        let r = Redis::new(
            &format!("redis://127.0.0.1:{}/", s.1),
            Duration::from_secs(2),
        )
        .unwrap();
        super::super::contract::counters(&r).await;
        super::super::contract::rate_limits(&r).await;
        super::super::contract::idempotency(&r).await;
    }

    #[tokio::test]
    async fn a_dead_server_is_an_error_not_a_hang() {
        let r = Redis::new("redis://127.0.0.1:1/", Duration::from_millis(300)).unwrap();
        let started = std::time::Instant::now();
        assert!(r.ping().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
