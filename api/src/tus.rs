//! The wire rules of tus 1.0 (<https://tus.io/protocols/resumable-upload>)
//! as this box speaks them: the version and extensions it announces, the
//! grammar of `Upload-Length`/`Upload-Offset`, `Upload-Metadata` and
//! `Upload-Checksum`, and how metadata maps onto what `complete` takes.
//! Pure functions on strings, so the unit tests and the fuzz target reach
//! them without a server; `routes::tus` does the HTTP.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::wire::{VideoMeta, Visibility};

/// The only protocol version served (`Tus-Resumable`, `Tus-Version`).
pub const VERSION: &str = "1.0.0";
/// `Tus-Extension`: what `OPTIONS` announces. Deferred length and
/// concatenation are left out: a video's size is known before it is sent,
/// and the transcode needs the whole file anyway.
pub const EXTENSIONS: &str = "creation,creation-with-upload,expiration,termination,checksum";
/// `Tus-Checksum-Algorithm`.
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
/// The media type of every body that carries upload bytes.
pub const CONTENT_TYPE: &str = "application/offset+octet-stream";
/// Response headers a browser client must be able to read (CORS).
pub const EXPOSED_HEADERS: &str = "Upload-Offset, Location, Upload-Length, Tus-Version, \
     Tus-Resumable, Tus-Max-Size, Tus-Extension, Upload-Metadata, Upload-Expires, Video-Id";
/// Request headers a browser client sends (CORS preflight).
pub const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Tus-Resumable, Upload-Length, \
     Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Defer-Length, Upload-Concat, \
     X-Idempotency-Key, X-Requested-With";
/// The custom status tus's checksum extension gives a body whose digest
/// does not match `Upload-Checksum`.
pub const CHECKSUM_MISMATCH: u16 = 460;

/// Upload bytes as they arrive; an `Err` is a body that broke off (client
/// gone, body timeout). Boxed so the `Uploads` trait stays free of axum.
pub type Body = BoxStream<'static, std::io::Result<Bytes>>;

/// A tus body as the OpenAPI document states it: raw bytes, any bytes
/// (so no schema: there is nothing a body could violate).
#[derive(ToSchema)]
#[schema(value_type = Value)]
pub struct TusBytes(pub Vec<u8>);

/// A creation request (`POST /uploads/tus`) once its headers are parsed.
#[derive(Debug, Clone, Default)]
pub struct Creation {
    /// `Upload-Length`.
    pub length: u64,
    /// `filename` (or Uppy's `name`); `upload` when none is given.
    pub filename: String,
    /// `filetype` (or `type`); guessed from the filename when absent.
    pub mime_type: Option<String>,
    /// What `complete` will be given when the last byte arrives.
    pub meta: VideoMeta,
    /// `Upload-Metadata` as sent, which `HEAD` returns.
    pub metadata: Option<String>,
}

/// Where a tus upload stands (what `HEAD` and each `PATCH` report).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TusUpload {
    pub upload_id: String,
    /// The video this upload becomes (it exists once the last byte is in).
    pub video_id: String,
    /// Bytes stored and acknowledged (`Upload-Offset`).
    pub offset: u64,
    /// `Upload-Length`.
    pub length: u64,
    /// When an unfinished upload expires (RFC 3339; `Upload-Expires` too).
    pub expires_at: String,
    /// True once the transcode is queued.
    pub completed: bool,
    /// Milliseconds since 1970 of `expires_at`, for the HTTP date.
    #[serde(skip)]
    pub expires_at_ms: i64,
    /// `Upload-Metadata` as it was sent at creation.
    #[serde(skip)]
    pub metadata: Option<String>,
}

/// `Tus-Resumable`: the client speaks 1.0.0, or the request is refused
/// with 412 (the caller adds `Tus-Version`).
pub fn check_version(sent: Option<&str>) -> ApiResult<()> {
    match sent.map(str::trim) {
        Some(VERSION) => Ok(()),
        Some(other) => Err(precondition(format!(
            "Tus-Resumable {other:?} is not supported; this server speaks tus {VERSION}"
        ))),
        None => Err(precondition(format!(
            "send Tus-Resumable: {VERSION} with every tus request"
        ))),
    }
}

fn precondition(message: String) -> ApiError {
    ApiError::new(crate::ErrorCode::PreconditionFailed, message)
        .with_details(serde_json::json!({ "field": "Tus-Resumable" }))
}

/// `Upload-Length` / `Upload-Offset`: a non-negative integer in decimal
/// digits only (no sign, no spaces, no exponent), within `u64`.
pub fn parse_number(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Metadata values are standard base64; padding is optional (some clients
/// drop it) and the key alone stands for an empty value.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `Upload-Metadata`: comma-separated `key[ base64]` pairs, keys non-empty,
/// without spaces or commas, and unique. Values are raw bytes.
pub fn parse_metadata(raw: &str) -> ApiResult<Vec<(String, Vec<u8>)>> {
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    if raw.trim().is_empty() {
        return Ok(pairs);
    }
    for item in raw.split(',') {
        let item = item.trim();
        let (key, value) = match item.split_once(' ') {
            Some((k, v)) => (k, v.trim()),
            None => (item, ""),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(metadata_error(format!(
                "`{item}` is not `key base64value` (keys are visible ASCII without commas)"
            )));
        }
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(metadata_error(format!("key `{key}` is given twice")));
        }
        let bytes = B64
            .decode(value)
            .map_err(|_| metadata_error(format!("the value of `{key}` is not base64")))?;
        pairs.push((key.to_owned(), bytes));
    }
    Ok(pairs)
}

fn metadata_error(what: String) -> ApiError {
    ApiError::invalid("Upload-Metadata", what)
}

/// A creation's length and metadata as the upload session and `complete`
/// take them. Keys: `filename`|`name`, `filetype`|`type`, `title`,
/// `description`, `hashtags` (a JSON array, or words separated by commas
/// or spaces), `soundId`|`sound_id`, `visibility`, `duetEnabled`,
/// `stitchEnabled` (`true`|`false`), `speed` (0.5, 1, 2, 3); others are ignored
/// (clients add their own, e.g. Uppy's `relativePath`). Without a title the
/// filename's stem is the title. The values' own rules (lengths, hashtag
/// characters, the mime type) are checked where the chunked API checks
/// them, so both protocols refuse the same things.
pub fn creation(length: u64, raw_metadata: Option<&str>) -> ApiResult<Creation> {
    let pairs = match raw_metadata {
        Some(raw) => parse_metadata(raw)?,
        None => Vec::new(),
    };
    let text = |names: &[&str]| -> ApiResult<Option<String>> {
        for (k, v) in &pairs {
            if names.contains(&k.as_str()) {
                return String::from_utf8(v.clone())
                    .map(Some)
                    .map_err(|_| metadata_error(format!("the value of `{k}` is not UTF-8")));
            }
        }
        Ok(None)
    };
    let filename = text(&["filename", "name"])?
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| "upload".to_owned());
    let mime_type = text(&["filetype", "type"])?.filter(|t| !t.trim().is_empty());
    let title = match text(&["title"])? {
        Some(t) => t,
        None => title_from(&filename),
    };
    let hashtags = match text(&["hashtags"])? {
        None => Vec::new(),
        Some(h) if h.trim_start().starts_with('[') => serde_json::from_str::<Vec<String>>(&h)
            .map_err(|_| metadata_error("hashtags: not a JSON array of strings".into()))?,
        Some(h) => h
            .split([',', ' ', '\t', '\n'])
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    let visibility = match text(&["visibility"])?.as_deref().map(str::trim) {
        None | Some("") => Visibility::default(),
        Some(v) if v.eq_ignore_ascii_case("public") => Visibility::Public,
        Some(v) if v.eq_ignore_ascii_case("unlisted") => Visibility::Unlisted,
        Some(v) if v.eq_ignore_ascii_case("private") => Visibility::Private,
        Some(v) => {
            return Err(metadata_error(format!(
                "visibility `{v}` is not public, unlisted or private"
            )))
        }
    };
    Ok(Creation {
        length,
        filename,
        mime_type,
        meta: VideoMeta {
            title,
            description: text(&["description"])?.unwrap_or_default(),
            hashtags,
            sound_id: text(&["soundId", "sound_id"])?,
            visibility,
            duet_enabled: flag(text(&["duetEnabled", "duet_enabled"])?, "duetEnabled")?,
            stitch_enabled: flag(text(&["stitchEnabled", "stitch_enabled"])?, "stitchEnabled")?,
            speed: match text(&["speed"])?.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(v) => {
                    Some(v.parse::<f64>().map_err(|_| {
                        metadata_error(format!("speed `{v}` is not 0.5, 1, 2 or 3"))
                    })?)
                }
            },
        },
        metadata: raw_metadata.map(str::to_owned),
    })
}

/// A `true`/`false` metadata value (absent: the default).
fn flag(value: Option<String>, name: &str) -> ApiResult<Option<bool>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(Some(false)),
        Some(v) => Err(metadata_error(format!("{name} `{v}` is not true or false"))),
    }
}

/// A filename's stem (at most 150 characters, a title's limit), or the
/// whole name when the stem is blank (`.mp4`).
fn title_from(filename: &str) -> String {
    let stem = match filename.rsplit_once('.') {
        Some((s, _)) if !s.trim().is_empty() => s,
        _ => filename,
    };
    stem.chars().take(150).collect()
}

/// A PATCH body's expected digest (`Upload-Checksum`). tus's checksum
/// extension requires every server to support sha1; sha256 is the one
/// to prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

/// The digest of a body as it streams in.
pub enum RunningDigest {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Checksum {
    pub fn start(&self) -> RunningDigest {
        use sha2::Digest as _;
        match self {
            Self::Sha1(_) => RunningDigest::Sha1(sha1::Sha1::new()),
            Self::Sha256(_) => RunningDigest::Sha256(sha2::Sha256::new()),
        }
    }
}

impl RunningDigest {
    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        match self {
            Self::Sha1(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
        }
    }

    /// Whether the body so far has the digest `want`.
    pub fn matches(self, want: &Checksum) -> bool {
        use sha2::Digest as _;
        match (self, want) {
            (Self::Sha1(h), Checksum::Sha1(w)) => h.finalize().as_slice() == w.as_slice(),
            (Self::Sha256(h), Checksum::Sha256(w)) => h.finalize().as_slice() == w.as_slice(),
            (Self::Sha1(_) | Self::Sha256(_), Checksum::Sha1(_) | Checksum::Sha256(_)) => false,
        }
    }
}

/// `Upload-Checksum: sha1|sha256 <base64 digest>`. Another algorithm, or
/// a digest of the wrong length or not base64, is a 400 (the tus rule for
/// an algorithm the server does not support).
pub fn parse_checksum(raw: &str) -> ApiResult<Checksum> {
    let bad = |what: &str| ApiError::invalid("Upload-Checksum", what);
    let (algorithm, digest) = raw
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("must be `sha1|sha256 <base64 digest>`"))?;
    let bytes = B64
        .decode(digest.trim())
        .map_err(|_| bad("the digest is not base64"))?;
    if algorithm.eq_ignore_ascii_case("sha256") {
        bytes
            .try_into()
            .map(Checksum::Sha256)
            .map_err(|_| bad("a sha256 digest is 32 bytes"))
    } else if algorithm.eq_ignore_ascii_case("sha1") {
        bytes
            .try_into()
            .map(Checksum::Sha1)
            .map_err(|_| bad("a sha1 digest is 20 bytes"))
    } else {
        Err(bad("the algorithms supported are sha1 and sha256"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn metadata_pairs_decode_and_map_onto_the_video() {
        let raw = format!(
            "filename {},filetype {},title {},hashtags {},visibility {},empty,relativePath {}",
            b64("holiday clip.mov"),
            b64("video/quicktime"),
            b64("Sea ☀"),
            b64("#sea, sun  beach"),
            b64("Unlisted"),
            b64("x/y")
        );
        let c = creation(42, Some(&raw)).unwrap();
        assert_eq!(c.length, 42);
        assert_eq!(c.filename, "holiday clip.mov");
        assert_eq!(c.mime_type.as_deref(), Some("video/quicktime"));
        assert_eq!(c.meta.title, "Sea ☀");
        assert_eq!(c.meta.hashtags, ["#sea", "sun", "beach"]);
        assert_eq!(c.meta.visibility, Visibility::Unlisted);
        assert_eq!(c.metadata.as_deref(), Some(raw.as_str()));
        let json = format!("hashtags {},soundId {}", b64(r#"["a","b c"]"#), b64("s1"));
        let c = creation(1, Some(&json)).unwrap();
        assert_eq!(c.meta.hashtags, ["a", "b c"]);
        assert_eq!(c.meta.sound_id.as_deref(), Some("s1"));
    }

    #[test]
    fn defaults_come_from_the_filename() {
        let c = creation(1, None).unwrap();
        assert_eq!(
            (c.filename.as_str(), c.meta.title.as_str()),
            ("upload", "upload")
        );
        assert_eq!(c.meta.visibility, Visibility::Public);
        let c = creation(1, Some(&format!("name {}", b64("beach.day.mp4")))).unwrap();
        assert_eq!(c.meta.title, "beach.day");
        let c = creation(1, Some(&format!("name {}", b64(".mp4")))).unwrap();
        assert_eq!(c.meta.title, ".mp4");
        // Unpadded base64 is taken too.
        let c = creation(1, Some("title U2Vh")).unwrap();
        assert_eq!(c.meta.title, "Sea");
        let c = creation(1, Some("title U2Vhcw")).unwrap();
        assert_eq!(c.meta.title, "Seas");
    }

    #[test]
    fn speed_and_remix_switches_are_read() {
        let raw = format!(
            "speed {},duetEnabled {},stitch_enabled {}",
            b64("2"),
            b64("false"),
            b64("TRUE")
        );
        let c = creation(1, Some(&raw)).unwrap();
        assert_eq!(c.meta.speed, Some(2.0));
        assert_eq!(c.meta.duet_enabled, Some(false));
        assert_eq!(c.meta.stitch_enabled, Some(true));
        let c = creation(1, None).unwrap();
        assert_eq!((c.meta.speed, c.meta.duet_enabled), (None, None));
        // Not a number / not a boolean: a 400 naming the header, as every
        // bad metadata value is, and the key in its message (whether a
        // number is a speed the box offers is `complete`'s rule).
        let e = creation(1, Some(&format!("speed {}", b64("fast")))).unwrap_err();
        assert_eq!(e.field(), Some("Upload-Metadata"), "{e}");
        assert!(e.to_string().contains("speed `fast`"), "{e}");
        let e = creation(1, Some(&format!("duetEnabled {}", b64("maybe")))).unwrap_err();
        assert_eq!(e.field(), Some("Upload-Metadata"), "{e}");
        assert!(e.to_string().contains("duetEnabled `maybe`"), "{e}");
    }

    #[test]
    fn bad_metadata_is_a_400_naming_the_header() {
        for raw in [
            "title !!!",
            "title U2Vh,title U2Vh",
            ",",
            "ti\u{7f}tle U2Vh",
            &format!("visibility {}", b64("secret")),
            &format!("hashtags {}", b64("[1, 2]")),
            "title /w==",
        ] {
            let e = creation(1, Some(raw)).unwrap_err();
            assert_eq!(e.field(), Some("Upload-Metadata"), "{raw}: {e}");
        }
        assert!(parse_metadata("").unwrap().is_empty());
        assert_eq!(parse_metadata("a").unwrap(), [("a".to_owned(), vec![])]);
    }

    #[test]
    fn checksums_are_sha1_or_sha256_in_base64() {
        let enc = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let header = format!("sha256 {}", enc(&[7u8; 32]));
        assert_eq!(parse_checksum(&header).unwrap(), Checksum::Sha256([7; 32]));
        assert_eq!(
            parse_checksum(&header.replacen("sha256", "SHA256", 1)).unwrap(),
            Checksum::Sha256([7; 32])
        );
        let sha1 = format!("sha1 {}", enc(&[9u8; 20]));
        assert_eq!(parse_checksum(&sha1).unwrap(), Checksum::Sha1([9; 20]));
        for bad in ["sha1 AAAA", "sha256", "sha256 !!", "sha256 AAAA", "md5 x"] {
            let e = parse_checksum(bad).unwrap_err();
            assert_eq!(e.field(), Some("Upload-Checksum"), "{bad}");
        }
    }

    #[test]
    fn a_running_digest_matches_the_published_vectors() {
        // FIPS 180 "abc" vectors.
        let sha1 = Checksum::Sha1(
            hex_bytes("a9993e364706816aba3e25717850c26c9cd0d89d")
                .try_into()
                .unwrap(),
        );
        let sha256 = Checksum::Sha256(
            hex_bytes("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .try_into()
                .unwrap(),
        );
        for want in [sha1, sha256] {
            let mut d = want.start();
            d.update(b"ab");
            d.update(b"c");
            assert!(d.matches(&want), "{want:?}");
            let mut other = want.start();
            other.update(b"abd");
            assert!(!other.matches(&want));
        }
        assert!(!sha1.start().matches(&sha256));
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn numbers_and_versions() {
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "-1", "+1", " 1", "1e3", "18446744073709551616", "0x10"] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
        assert!(check_version(Some("1.0.0")).is_ok());
        for bad in [None, Some("0.2.0"), Some("1.0")] {
            let e = check_version(bad).unwrap_err();
            assert_eq!(e.status().as_u16(), 412);
        }
    }
}
