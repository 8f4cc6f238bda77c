//! A static HTTP origin for the browser test: serves the player page,
//! hls.js and the ingester's output directory, uncached like a live origin.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A minimal static HTTP server for the browser test: `routes` map a URL
/// path to a file, or a URL prefix (ending in `/`) to a directory.
/// Every response says `Cache-Control: no-cache`, as a live origin's
/// playlists would.
pub struct StaticServer {
    pub base: String,
    stop: Arc<AtomicBool>,
}

impl StaticServer {
    pub fn start(routes: Vec<(String, PathBuf)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let routes = Arc::new(routes);
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let routes = Arc::clone(&routes);
                        std::thread::spawn(move || {
                            let _ = serve_one(stream, &routes);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { base, stop }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_one(mut stream: TcpStream, routes: &[(String, PathBuf)]) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/").split('?').next().unwrap_or("/");
    let file = routes.iter().find_map(|(prefix, target)| {
        if target.is_dir() {
            let rest = path.strip_prefix(prefix.as_str())?;
            if rest.split('/').any(|c| c == ".." || c.is_empty()) {
                return None;
            }
            Some(target.join(rest))
        } else {
            (path == prefix).then(|| target.clone())
        }
    });
    let body = file.as_ref().and_then(|f| std::fs::read(f).ok());
    let (status, body, ctype) = match body {
        Some(b) => {
            let f = file.unwrap();
            let ctype = match f.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "m3u8" => "application/vnd.apple.mpegurl",
                "mp4" => "video/mp4",
                "m4s" => "video/iso.segment",
                "html" => "text/html; charset=utf-8",
                "js" => "text/javascript",
                _ => "application/octet-stream",
            };
            ("200 OK", b, ctype)
        }
        None => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()
}
