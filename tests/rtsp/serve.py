#!/usr/bin/python3
"""A camera-like RTSP server for the live-ingest tests, built only from
Debian's GStreamer (gst-rtsp-server through python3-gi); nothing of the
project is in the media path.

    /usr/bin/python3 tests/rtsp/serve.py --port P [--address 127.0.0.1]
    /usr/bin/python3 tests/rtsp/serve.py --check

Mounts (all live sources, 1280x720 at 30 fps, a key frame every second):

    /h264        H.264 (x264enc, zerolatency)            rtph264pay
    /h265        H.265 (x265enc, zerolatency)            rtph265pay
    /h264-pcma   H.264 + G.711 A-law, 8 kHz mono         rtppcmapay (PT 8)
    /h264-aac    H.264 + AAC-LC, 48 kHz stereo           rtpmp4gpay (mpeg4-generic, AAC-hbr)

Media factories are shared: every client of a mount sees the same stream,
the way an IP camera serves several viewers. RTP goes over TCP (interleaved)
or UDP, whichever the client asks for.

Prints exactly one line "ready rtsp://ADDRESS:PORT/" on stdout once it is
listening (and "aac-encoder NAME" on stderr), then serves until SIGTERM or
SIGINT. `--check` only checks that every element is installed and serves
nothing. Exits 2 if a required GStreamer element is missing (the message
names the Debian packages) and 3 if the port cannot be bound.
"""

import argparse
import signal
import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as e:
    sys.stderr.write(
        "serve.py: GStreamer's RTSP server is not importable (%s); install "
        "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp\n" % e
    )
    sys.exit(2)

# element -> the Debian package that ships it
ELEMENTS = {
    "videotestsrc": "gstreamer1.0-plugins-base",
    "audiotestsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "audioconvert": "gstreamer1.0-plugins-base",
    "audioresample": "gstreamer1.0-plugins-base",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "x265enc": "gstreamer1.0-plugins-bad",
    "h264parse": "gstreamer1.0-plugins-bad",
    "h265parse": "gstreamer1.0-plugins-bad",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "rtph265pay": "gstreamer1.0-plugins-good",
    "alawenc": "gstreamer1.0-plugins-good",
    "rtppcmapay": "gstreamer1.0-plugins-good",
    "rtpmp4gpay": "gstreamer1.0-plugins-good",
    "aacparse": "gstreamer1.0-plugins-good",
}
# AAC encoders in Debian's GStreamer, preferred first.
AAC_ENCODERS = [
    ("voaacenc", "voaacenc bitrate=128000", "gstreamer1.0-plugins-bad"),
    ("avenc_aac", "avenc_aac bitrate=128000", "gstreamer1.0-libav"),
]

VIDEO = (
    "videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=1280,height=720,framerate=30/1 "
    "! videoconvert ! video/x-raw,format=I420 ! "
)
H264 = (
    VIDEO + "x264enc tune=zerolatency speed-preset=superfast bitrate=2000 "
    "key-int-max=30 bframes=0 ! video/x-h264,profile=high "
    # x264 repeats SPS/PPS in band before every IDR. rtph264pay's own
    # config-interval=-1 would send them once more as a separate STAP-A, which
    # makes ffmpeg's RTSP demuxer emit two packets with one DTS per key frame.
    "! h264parse ! rtph264pay name=pay0 pt=96"
)
H265 = (
    VIDEO + "x265enc tune=zerolatency speed-preset=ultrafast bitrate=1500 "
    "key-int-max=30 ! h265parse "
    # x265enc does not repeat VPS/SPS/PPS in band: the payloader inserts them
    # before every IDR so a client joining a shared stream can start.
    "! rtph265pay name=pay0 pt=96 config-interval=-1"
)
PCMA = (
    " audiotestsrc is-live=true wave=sine freq=440 volume=0.3 "
    "! audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 "
    "! alawenc ! rtppcmapay name=pay1 pt=8"
)


def aac_branch(encoder):
    return (
        " audiotestsrc is-live=true wave=sine freq=440 volume=0.3 "
        "! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 "
        "! %s ! aacparse ! rtpmp4gpay name=pay1 pt=97" % encoder
    )


def check_elements():
    missing = sorted(
        {pkg for el, pkg in ELEMENTS.items() if Gst.ElementFactory.find(el) is None}
    )
    if missing:
        sys.stderr.write(
            "serve.py: missing GStreamer elements; install %s\n" % " ".join(missing)
        )
        sys.exit(2)
    for name, launch, _ in AAC_ENCODERS:
        if Gst.ElementFactory.find(name) is not None:
            return name, launch
    sys.stderr.write(
        "serve.py: no AAC encoder; install %s\n"
        % " or ".join(pkg for _, _, pkg in AAC_ENCODERS)
    )
    sys.exit(2)


def factory(launch):
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch("( %s )" % launch)
    f.set_shared(True)
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--check", action="store_true", help="check the elements, serve nothing")
    args = ap.parse_args()
    if args.port is None and not args.check:
        ap.error("--port is required")

    Gst.init(None)
    aac_name, aac_launch = check_elements()
    sys.stderr.write("aac-encoder %s\n" % aac_name)
    if args.check:
        return

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    mounts.add_factory("/h264", factory(H264))
    mounts.add_factory("/h265", factory(H265))
    mounts.add_factory("/h264-pcma", factory(H264 + PCMA))
    mounts.add_factory("/h264-aac", factory(H264 + aac_branch(aac_launch)))

    loop = GLib.MainLoop()
    try:
        source = server.attach(None)
    except GLib.Error as e:
        sys.stderr.write("serve.py: cannot listen on %s:%d: %s\n" % (args.address, args.port, e))
        sys.exit(3)
    if source == 0:
        sys.stderr.write("serve.py: cannot listen on %s:%d\n" % (args.address, args.port))
        sys.exit(3)

    def stop():
        loop.quit()
        return GLib.SOURCE_REMOVE

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, stop)

    sys.stdout.write("ready rtsp://%s:%d/\n" % (args.address, server.get_bound_port()))
    sys.stdout.flush()
    loop.run()


if __name__ == "__main__":
    main()
