//! Real `redis-server` and `clickhouse-server` (Debian packages) on
//! loopback, each with all its state in a test's temporary directory, on
//! free ports. Both can be stopped and started again on the same state.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn require(program: &str) {
    if !crate::server::have(program) {
        panic!("{program} is not installed: run scripts/setup (it installs redis-server and clickhouse-server)");
    }
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            panic!("{what} did not come up within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_child(child: &mut Option<Child>, term: bool) {
    if let Some(mut c) = child.take() {
        if term {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start(dir: &Path) -> Self {
        require("redis-server");
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Self {
            port: free_port(),
            dir,
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again (empty: no persistence, like a Redis that lost its
    /// memory).
    pub fn restart(&mut self) {
        stop_child(&mut self.child, false);
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &self.port.to_string()])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Gone at once, with everything it held.
    pub fn kill(&mut self) {
        stop_child(&mut self.child, false);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct ClickHouse {
    pub http_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ClickHouse {
    pub fn start(dir: &Path) -> Self {
        require("clickhouse-server");
        let dir = dir.join("clickhouse");
        std::fs::create_dir_all(&dir).unwrap();
        let http_port = free_port();
        let tcp_port = free_port();
        let d = dir.display();
        std::fs::write(
            dir.join("users.xml"),
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default/></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>::1</ip><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default/></quotas>
</yandex>
"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/log/server.log</log>
        <errorlog>{d}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{d}/data/</path>
    <tmp_path>{d}/data/tmp/</tmp_path>
    <user_files_path>{d}/data/user_files/</user_files_path>
    <format_schema_path>{d}/data/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <mark_cache_size>268435456</mark_cache_size>
    <timezone>UTC</timezone>
</yandex>
"#
            ),
        )
        .unwrap();
        let mut c = Self {
            http_port,
            dir,
            child: None,
        };
        c.resume();
        c
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Starts it (again) on the same data.
    pub fn resume(&mut self) {
        stop_child(&mut self.child, true);
        let child = Command::new("clickhouse-server")
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clickhouse-server");
        self.child = Some(child);
        let url = format!("{}/?query=SELECT%201", self.url());
        wait_until("clickhouse-server", Duration::from_secs(60), || {
            ureq::get(&url).call().is_ok()
        });
    }

    /// SIGTERM, waiting for it to exit.
    pub fn stop(&mut self) {
        stop_child(&mut self.child, true);
    }

    /// Runs a query over HTTP; the body as text.
    pub fn query(&self, sql: &str) -> String {
        let mut resp = ureq::post(&format!("{}/", self.url()))
            .send(sql)
            .unwrap_or_else(|e| panic!("clickhouse query {sql:?}: {e}"));
        resp.body_mut().read_to_string().unwrap()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        stop_child(&mut self.child, false);
    }
}
