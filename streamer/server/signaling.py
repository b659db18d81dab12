"""WebRTC signaling and the few aiortc/aioice behaviours facestream has to adjust.

Offer/answer over plain HTTP JSON (no trickle ICE: aiortc gathers before answering, which on
host candidates only takes milliseconds). Three process-wide adjustments live here and only
here, each applied by an explicit call at server start:

- Bitrate: aiortc clamps its encoders with module constants (`aiortc.codecs.vpx.MAX_BITRATE`
  1.5 Mbps, `aiortc.codecs.h264.MAX_BITRATE` 3 Mbps, starting from `DEFAULT_BITRATE` 0.5 / 1
  Mbps). At 720p that washes out the facial detail the pipeline creates. `set_video_bitrate`
  sets start and ceiling to the configured value (receiver feedback can still lower it, down to
  aiortc's MIN_BITRATE). These are module globals read at encode time, so the change holds for
  every peer connection in the process; one server per process is the supported setup.
- Loopback ICE: aioice never gathers 127.0.0.1 (RFC 8445 forbids loopback host candidates).
  On a machine whose only IPv4 interface is loopback (a CI container, an offline laptop) no
  candidate would be left and nothing could connect, so `enable_loopback_fallback` adds
  127.0.0.1 exactly then. With a LAN address present, that address carries loopback traffic.
- No STUN by default: aiortc reaches for a public STUN server unless told otherwise;
  `rtc_configuration` builds the ICE server list from `server.stun_servers` (empty = none).

Per peer, `add_senders` gives each requested track its sender: the shared encoder of the
negotiated codec and the rendition the offer asked for (`"rendition"`, default full), with the
sender's PLI/FIR forwarded to that encoder (`forward_keyframe_requests`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender
from aiortc.codecs import h264, vpx
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from streamer.server.tracks import CameraTracks, PacketTrack

log = logging.getLogger(__name__)

CODEC_MIME = {"vp8": "video/VP8", "h264": "video/H264"}
MAX_SDP_CHARS = 64_000
STOCK_BITRATES = {
    "vpx": (vpx.MIN_BITRATE, vpx.DEFAULT_BITRATE, vpx.MAX_BITRATE),
    "h264": (h264.MIN_BITRATE, h264.DEFAULT_BITRATE, h264.MAX_BITRATE),
}
"""aiortc's own (floor, start, ceiling) in bit/s, kept so a benchmark can compare against them."""


class OfferError(ValueError):
    """The offer body is malformed; the message says what was wrong (HTTP 400)."""


class PeerLimitError(Exception):
    """A cap on peer connections was reached (HTTP `status`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def set_video_bitrate(kbps: int | None, pinned: bool = False) -> None:
    """Start and cap aiortc's VP8 and H.264 encoders at `kbps`; None restores aiortc's defaults.
    `pinned` also raises the floor to `kbps`, so receiver feedback cannot move it (benchmarks)."""
    vpx.MIN_BITRATE, vpx.DEFAULT_BITRATE, vpx.MAX_BITRATE = STOCK_BITRATES["vpx"]
    h264.MIN_BITRATE, h264.DEFAULT_BITRATE, h264.MAX_BITRATE = STOCK_BITRATES["h264"]
    if kbps is None:
        return
    bps = int(kbps) * 1000
    vpx.DEFAULT_BITRATE = vpx.MAX_BITRATE = max(bps, vpx.MIN_BITRATE)
    h264.DEFAULT_BITRATE = h264.MAX_BITRATE = max(bps, h264.MIN_BITRATE)
    if pinned:
        vpx.MIN_BITRATE = vpx.MAX_BITRATE
        h264.MIN_BITRATE = h264.MAX_BITRATE
    log.debug("video bitrate set to %d kbit/s (aiortc stock: VP8 cap 1500, H.264 cap 3000)", kbps)


_stock_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def _host_addresses_with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _stock_get_host_addresses(use_ipv4, use_ipv6)
    has_ipv4 = any(":" not in a for a in addresses)
    if use_ipv4 and not has_ipv4:
        addresses.append("127.0.0.1")
    return addresses


def enable_loopback_fallback() -> None:
    """Let ICE use 127.0.0.1 when the machine has no other IPv4 address (idempotent)."""
    aioice.ice.get_host_addresses = _host_addresses_with_loopback


def rtc_configuration(stun_servers: tuple[str, ...]) -> RTCConfiguration:
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in stun_servers])


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    mime = CODEC_MIME[codec]
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == mime]
    transceiver.setCodecPreferences(codecs)


def forward_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Call `request` whenever `sender` receives a PLI or FIR. aiortc 1.16 handles those in
    `RTCRtpSender._handle_rtcp_packet` by calling `self._send_keyframe()`, which only sets a
    flag read on its own encode path; a sender of pre-encoded packets never reads it. So the
    instance's `_send_keyframe` is wrapped (aiortc's flag still set, harmlessly)."""
    stock = sender._send_keyframe

    def send_keyframe() -> None:
        stock()
        request()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


@dataclass(frozen=True)
class Offer:
    sdp: str
    tracks: tuple[str, ...]
    codec: str
    rendition: str = "full"


def parse_offer(
    body: Any, default_codec: str, kinds: tuple[str, ...], renditions: tuple[str, ...] = ("full",)
) -> Offer:
    """Check an offer body: {"sdp": str, "type": "offer", "tracks"?: [kind, ...], "codec"?: str,
    "rendition"?: one of `renditions`}."""
    if not isinstance(body, dict):
        raise OfferError("offer body must be a JSON object with 'sdp' and 'type'")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer":
        raise OfferError(f"'type' must be \"offer\", got {kind!r}")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise OfferError("'sdp' must be an SDP string starting with v=0")
    if len(sdp) > MAX_SDP_CHARS:
        raise OfferError(f"'sdp' is longer than {MAX_SDP_CHARS} characters")
    tracks = body.get("tracks", list(kinds))
    if (
        not isinstance(tracks, list)
        or not 1 <= len(tracks) <= len(kinds)
        or any(t not in kinds for t in tracks)
        or len(set(tracks)) != len(tracks)
    ):
        raise OfferError(f"'tracks' must be a list of distinct names from {list(kinds)}")
    codec = body.get("codec", default_codec)
    if codec not in CODEC_MIME:
        raise OfferError(f"'codec' must be one of {sorted(CODEC_MIME)}, got {codec!r}")
    rendition = body.get("rendition", "full")
    if rendition not in renditions:
        raise OfferError(f"'rendition' must be one of {list(renditions)}, got {rendition!r}")
    return Offer(sdp=sdp, tracks=tuple(tracks), codec=codec, rendition=rendition)


def add_senders(pc: RTCPeerConnection, tracks: CameraTracks, offer: Offer) -> list[RTCRtpTransceiver]:
    """One sendonly transceiver per requested track, restricted to the offer's codec (so the
    shared encoder of that codec is the right one)."""
    ours = []
    for which in offer.tracks:
        track = tracks.subscribe(which, offer.codec, offer.rendition)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        prefer_codec(transceiver, offer.codec)
        if isinstance(track, PacketTrack):
            forward_keyframe_requests(transceiver.sender, track.request_keyframe)
        ours.append(transceiver)
    return ours


class PeerCaps:
    """Counts open peer connections per client address and in total, and refuses past the caps."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._by_client: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self._by_client.values())

    def count(self, client: str) -> int:
        return self._by_client[client]

    def acquire(self, client: str) -> None:
        if self._by_client[client] >= self.max_per_client:
            raise PeerLimitError(
                f"too many video connections from {client} (limit {self.max_per_client}); close a viewer tab",
                429,
            )
        if self.total >= self.max_total:
            raise PeerLimitError(
                f"server is at its limit of {self.max_total} video connections; try again later", 503
            )
        self._by_client[client] += 1

    def release(self, client: str) -> None:
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]
