//! Playback tokens on the wire: where a request carries one, and the text
//! files served with one, rewritten so that every URI they name carries it
//! too (a player fetches what a playlist names and adds nothing of its
//! own). A wire format, like the cursors, so it lives here; the handlers
//! are `routes::playback`, the token's cryptography the domain's.

/// The query parameter a token travels in (part of the URL, so of a CDN's
/// cache key when the key is the whole request URI).
pub const TOKEN_PARAM: &str = "token";
/// The header a token may travel in instead (never a cookie: the origin
/// sets none and varies by none). Not part of a URL-keyed cache key, so
/// such responses are never shareable.
pub const TOKEN_HEADER: &str = "x-playback-token";

/// `uri` with `token` added as its `token` query parameter, before any
/// fragment. A URI with a scheme or an authority (another host, `data:`)
/// is returned as it is: a token is only ever sent back to this origin.
pub fn with_token(uri: &str, token: &str) -> String {
    if uri.is_empty() || uri.starts_with("//") || has_scheme(uri) {
        return uri.to_owned();
    }
    let (base, fragment) = match uri.find('#') {
        Some(i) => uri.split_at(i),
        None => (uri, ""),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let value: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    format!("{base}{sep}{TOKEN_PARAM}={value}{fragment}")
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"` before
/// any `/`, `?` or `#`.
fn has_scheme(uri: &str) -> bool {
    let Some(colon) = uri.find(':') else {
        return false;
    };
    let scheme = &uri[..colon];
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// An HLS playlist (master or media) whose every URI carries `token`: the
/// URI lines (variant playlists, media segments) and every quoted `URI`
/// attribute of a tag (`EXT-X-MAP` init segments, `EXT-X-MEDIA`
/// renditions, `EXT-X-I-FRAME-STREAM-INF`, `EXT-X-IMAGE-STREAM-INF`,
/// `EXT-X-KEY`, `EXT-X-SESSION-DATA`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
/// `EXT-X-RENDITION-REPORT`, …). Everything else, line endings included,
/// is kept byte for byte.
pub fn rewrite_playlist(text: &str, token: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (content, ending) = split_ending(line);
        if content.starts_with("#EXT") {
            out.push_str(&rewrite_uri_attributes(content, token));
        } else if content.starts_with('#') || content.trim().is_empty() {
            // Comments and blank lines name nothing.
            out.push_str(content);
        } else {
            out.push_str(&with_token(content.trim(), token));
        }
        out.push_str(ending);
    }
    out
}

/// A WebVTT file (the storyboard's thumbnails track) whose every cue's
/// payload, the image URI of a thumbnails track
/// (`storyboard.jpg#xywh=…`), carries `token`.
pub fn rewrite_vtt(text: &str, token: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut in_cue = false;
    for line in text.split_inclusive('\n') {
        let (content, ending) = split_ending(line);
        if content.trim().is_empty() {
            in_cue = false;
            out.push_str(content);
        } else if content.contains("-->") {
            // The timing line: the cue's payload follows, to a blank line.
            in_cue = true;
            out.push_str(content);
        } else if in_cue {
            out.push_str(&with_token(content.trim(), token));
        } else {
            out.push_str(content);
        }
        out.push_str(ending);
    }
    out
}

fn split_ending(line: &str) -> (&str, &str) {
    let content = line.trim_end_matches(['\n', '\r']);
    (content, &line[content.len()..])
}

/// A tag line with each `URI="…"` attribute's value rewritten. An
/// attribute starts after the tag's `:` or a `,` (so `XURI=` is another
/// attribute); values are quoted strings without `"` (RFC 8216 §4.2).
fn rewrite_uri_attributes(line: &str, token: &str) -> String {
    let Some(colon) = line.find(':') else {
        return line.to_owned();
    };
    let mut out = String::with_capacity(line.len() + 64);
    out.push_str(&line[..=colon]);
    let mut rest = &line[colon + 1..];
    let mut at_attribute = true;
    while !rest.is_empty() {
        if at_attribute {
            if let Some(after) = rest.strip_prefix("URI=\"") {
                if let Some(end) = after.find('"') {
                    out.push_str("URI=\"");
                    out.push_str(&with_token(&after[..end], token));
                    out.push('"');
                    rest = &after[end + 1..];
                    at_attribute = false;
                    continue;
                }
            }
        }
        // Copy one character, skipping over quoted strings whole so a
        // comma inside one does not start an attribute.
        let c = rest.chars().next().unwrap_or_default();
        if c == '"' {
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            at_attribute = false;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            at_attribute = c == ',';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ2In0.c2ln-_";

    fn golden(path: &str) -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
        std::fs::read_to_string(dir.join(path)).unwrap()
    }

    #[test]
    fn a_uri_gains_the_token_before_its_fragment_and_only_on_this_origin() {
        assert_eq!(with_token("0.m4s", "a.b"), "0.m4s?token=a.b");
        assert_eq!(with_token("x.m4s?v=2", "a"), "x.m4s?v=2&token=a");
        assert_eq!(
            with_token("storyboard.jpg#xywh=0,0,160,90", "a"),
            "storyboard.jpg?token=a#xywh=0,0,160,90"
        );
        assert_eq!(
            with_token("../720p/init.mp4", "a"),
            "../720p/init.mp4?token=a"
        );
        // Escaped, should a token ever hold more than base64url and dots.
        assert_eq!(with_token("a.m4s", "x y&\""), "a.m4s?token=x+y%26%22");
        for elsewhere in [
            "https://cdn.example/0.m4s",
            "//cdn.example/0.m4s",
            "data:text/plain,hi",
            "skd://key",
            "",
        ] {
            assert_eq!(with_token(elsewhere, "a"), elsewhere);
        }
    }

    /// The packager's own master and media playlists (tests/golden): every
    /// URI carries the token, and nothing else changed.
    #[test]
    fn a_generated_ladder_names_every_file_with_the_token() {
        let master = golden("prog_640x360_h264_aac_8s/master.m3u8");
        assert_eq!(
            rewrite_playlist(&master, T),
            format!(
                "#EXTM3U\n\
                 #EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8?token={T}\",GROUP-ID=\"audio\",NAME=\"default\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\"\n\
                 #EXT-X-STREAM-INF:BANDWIDTH=203357,AVERAGE-BANDWIDTH=188064,CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO=\"audio\"\n\
                 360p/index.m3u8?token={T}\n\
                 #EXT-X-INDEPENDENT-SEGMENTS\n"
            )
        );
        let media = golden("prog_640x360_h264_aac_8s/360p/index.m3u8");
        assert_eq!(
            rewrite_playlist(&media, T),
            format!(
                "#EXTM3U\n\
                 #EXT-X-VERSION:6\n\
                 #EXT-X-TARGETDURATION:4\n\
                 #EXT-X-PLAYLIST-TYPE:VOD\n\
                 #EXT-X-INDEPENDENT-SEGMENTS\n\
                 #EXT-X-MAP:URI=\"init.mp4?token={T}\"\n\
                 #EXTINF:4,\n\
                 0.m4s?token={T}\n\
                 #EXTINF:4,\n\
                 1.m4s?token={T}\n\
                 #EXT-X-ENDLIST\n"
            )
        );
        // Every other golden playlist: each URI line and URI attribute has
        // the token exactly once, and stripping it gives the file back.
        for name in [
            "h264_1080p50_1s/master.m3u8",
            "h264_1080p50_1s/1080p/index.m3u8",
            "bbb_320x240_h264_aac_10s/master.m3u8",
            "hevc_1080p50_1s/master.m3u8",
        ] {
            let text = golden(name);
            let signed = rewrite_playlist(&text, T);
            assert_eq!(signed.replace(&format!("?token={T}"), ""), text, "{name}");
            let uris = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count()
                + text.matches("URI=\"").count();
            assert!(uris > 0, "{name}");
            assert_eq!(signed.matches(T).count(), uris, "{name}: {signed}");
        }
    }

    #[test]
    fn every_uri_attribute_is_rewritten_and_nothing_that_only_looks_like_one() {
        let text = "#EXTM3U\r\n\
            #EXT-X-SESSION-DATA:DATA-ID=\"a,URI=x\",URI=\"meta.json\"\r\n\
            #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"720p/iframes.m3u8\"\r\n\
            #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://k\",KEYFORMAT=\"com.apple\"\r\n\
            #EXT-X-FOO:XURI=\"nope\",NAME=\"URI=\"\r\n\
            # a comment naming URI=\"x\"\r\n\
            \r\n  1.m4s  \r\n";
        assert_eq!(
            rewrite_playlist(text, "t"),
            "#EXTM3U\r\n\
             #EXT-X-SESSION-DATA:DATA-ID=\"a,URI=x\",URI=\"meta.json?token=t\"\r\n\
             #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"720p/iframes.m3u8?token=t\"\r\n\
             #EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"skd://k\",KEYFORMAT=\"com.apple\"\r\n\
             #EXT-X-FOO:XURI=\"nope\",NAME=\"URI=\"\r\n\
             # a comment naming URI=\"x\"\r\n\
             \r\n1.m4s?token=t\r\n"
        );
    }

    #[test]
    fn the_thumbnails_track_names_its_sprite_with_the_token() {
        let vtt = "WEBVTT\n\
            \n00:00:00.000 --> 00:00:01.000\nstoryboard.jpg#xywh=0,0,160,90\n\
            \nNOTE not a cue: storyboard.jpg\n\
            \ncue-2\n00:00:01.000 --> 00:00:02.000\nstoryboard.jpg#xywh=160,0,160,90\n";
        assert_eq!(
            rewrite_vtt(vtt, "t"),
            "WEBVTT\n\
             \n00:00:00.000 --> 00:00:01.000\nstoryboard.jpg?token=t#xywh=0,0,160,90\n\
             \nNOTE not a cue: storyboard.jpg\n\
             \ncue-2\n00:00:01.000 --> 00:00:02.000\nstoryboard.jpg?token=t#xywh=160,0,160,90\n"
        );
    }
}
