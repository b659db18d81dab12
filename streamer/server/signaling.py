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

An offer is checked here before aiortc sees it (`parse_offer`): aiortc trusts the SDP it is given,
and some malformed offers leave a peer connection it cannot even close (an m-line of an unknown
kind heading the BUNDLE group). `CandidatePolicy` strips the candidates an offer may not aim the
server's connectivity checks at. `PendingOffers` holds answered offers that have not connected
yet, apart from the peer caps, so offers that never connect cannot lock real viewers out.

Per peer, `add_senders` gives each requested track its sender: the shared encoder of the
negotiated codec and the rendition the offer asked for (`"rendition"`, default full), with the
sender's PLI/FIR forwarded to that encoder (`forward_keyframe_requests`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import aioice.ice
import ifaddr
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender
from aiortc.codecs import h264, vpx
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.sdp import SessionDescription, candidate_from_sdp, parse_attr

from streamer.server.tracks import CameraTracks, PacketTrack

log = logging.getLogger(__name__)

CODEC_MIME = {"vp8": "video/VP8", "h264": "video/H264"}
MAX_SDP_CHARS = 64_000
MEDIA_KINDS = ("audio", "video")
"""What an offer's m-lines may be: aiortc leaves other kinds without a transport."""
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10")
)
MDNS_NAME = re.compile(r"[0-9a-zA-Z-]{1,63}\.local")
"""Browsers hide host addresses behind such names; they resolve only by multicast on the local link."""
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
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


def _shown(value: object, limit: int = 40) -> str:
    """A client's value, short enough to echo in a 400 and to log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_offer(
    body: Any, default_codec: str, kinds: tuple[str, ...], renditions: tuple[str, ...] = ("full",)
) -> Offer:
    """Check an offer body: {"sdp": str, "type": "offer", "tracks"?: [kind, ...], "codec"?: str,
    "rendition"?: one of `renditions`}, and that its SDP has what the tracks need, in a shape
    aiortc can apply and undo."""
    if not isinstance(body, dict):
        raise OfferError("offer body must be a JSON object with 'sdp' and 'type'")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer":
        raise OfferError(f"'type' must be \"offer\", got {_shown(kind)}")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise OfferError("'sdp' must be an SDP string starting with v=0")
    if len(sdp) > MAX_SDP_CHARS:
        raise OfferError(f"'sdp' is longer than {MAX_SDP_CHARS} characters")
    tracks = body.get("tracks", list(kinds))
    if (
        not isinstance(tracks, list)
        or not 1 <= len(tracks) <= len(kinds)
        or any(not isinstance(t, str) or t not in kinds for t in tracks)
        or len(set(tracks)) != len(tracks)
    ):
        raise OfferError(f"'tracks' must be a list of distinct names from {list(kinds)}")
    codec = body.get("codec", default_codec)
    if not isinstance(codec, str) or codec not in CODEC_MIME:
        raise OfferError(f"'codec' must be one of {sorted(CODEC_MIME)}, got {_shown(codec)}")
    rendition = body.get("rendition", "full")
    if not isinstance(rendition, str) or rendition not in renditions:
        raise OfferError(f"'rendition' must be one of {list(renditions)}, got {_shown(rendition)}")
    _check_media(sdp, len(tracks), codec)
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


def parse_sdp_offer(sdp: str, track: str, default_codec: str) -> Offer:
    """Check a bare SDP offer (WHEP) for one `track`: the codec is the server's own if the first
    video m-line offers it, else the other one it offers; the same checks as `parse_offer` after."""
    if not sdp.startswith("v=0"):
        raise OfferError("the body must be an SDP offer starting with v=0")
    description = _parsed(sdp)
    video = next((m for m in description.media if m.kind == "video"), None)
    offered = {c.mimeType.lower() for c in video.rtp.codecs} if video is not None else set()
    usable = [c for c in (default_codec, *CODEC_MIME) if CODEC_MIME[c].lower() in offered]
    if not usable:
        raise OfferError(f"the offer's first video m-line must offer one of {sorted(CODEC_MIME)}")
    _check_description(description, 1, usable[0])
    return Offer(sdp=sdp, tracks=(track,), codec=usable[0])


def _parsed(sdp: str) -> SessionDescription:
    try:
        return SessionDescription.parse(sdp)
    except Exception:  # aiortc's parser asserts and indexes freely: any failure means malformed SDP
        raise OfferError("'sdp' is not SDP that can be parsed") from None


def _check_media(sdp: str, n_tracks: int, codec: str) -> None:
    _check_description(_parsed(sdp), n_tracks, codec)


def _check_description(description: SessionDescription, n_tracks: int, codec: str) -> None:
    mids = [m.rtp.muxId for m in description.media]
    if any(m.kind not in MEDIA_KINDS for m in description.media):
        raise OfferError(f"every m-line must be one of {list(MEDIA_KINDS)} (lower case)")
    # Without these aiortc still answers, then its connect task fails inside (an exception no
    # one collects) and the peer holds a pending place until its timeout.
    if any(m.dtls is None or not m.dtls.fingerprints for m in description.media):
        raise OfferError("every m-line needs a DTLS a=fingerprint (at session or media level)")
    if any(m.ice is None or not m.ice.usernameFragment or not m.ice.password for m in description.media):
        raise OfferError("every m-line needs a=ice-ufrag and a=ice-pwd")
    if len(set(mids)) != len(mids):
        raise OfferError("the offer's m-lines must have distinct a=mid values")
    for group in description.group:
        if group.semantic == "BUNDLE" and any(item not in mids for item in group.items):
            raise OfferError("a=group:BUNDLE names a mid that no m-line has")
    video = [m for m in description.media if m.kind == "video"]
    if len(video) < n_tracks:
        raise OfferError(
            f"the offer has {len(video)} video m-line(s) for {n_tracks} track(s); "
            "add one recvonly video transceiver per track"
        )
    mime = CODEC_MIME[codec].lower()
    if not all(any(c.mimeType.lower() == mime for c in m.rtp.codecs) for m in video[:n_tracks]):
        raise OfferError(f"the offer's video m-lines must offer {codec}")


class CandidatePolicy:
    """Which ICE candidates an offer may name: only addresses in `networks`, plus mDNS names
    (local link only). The server sends connectivity checks to every candidate it keeps, so
    without this an offer could aim it at any host and port."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    @classmethod
    def from_config(cls, configured: tuple[str, ...]) -> CandidatePolicy:
        if configured:
            return cls(ipaddress.ip_network(n, strict=False) for n in configured)
        return cls((*interface_networks(), *PRIVATE_NETWORKS))

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return MDNS_NAME.fullmatch(host) is not None
        return any(address in net for net in self.networks)

    def filter_sdp(self, sdp: str) -> tuple[str, list[str]]:
        """The SDP without the candidates outside the policy (and those aiortc could not parse),
        and the refused addresses. Lines are split exactly as aiortc's own parser splits them."""
        kept, refused = [], []
        for line in sdp.splitlines():
            if line.startswith("a=") and parse_attr(line)[0] == "candidate":
                try:
                    host = candidate_from_sdp(parse_attr(line)[1] or "").ip
                except (AssertionError, ValueError, IndexError):
                    refused.append("unparsable")
                    continue
                if not self.allows(host):
                    refused.append(host)
                    continue
            kept.append(line)
        return "\r\n".join(kept) + "\r\n", refused


def interface_networks() -> list[Network]:
    """The networks of the addresses the ICE agent gathers its host candidates on (it listens on
    every interface, whatever the HTTP host), and loopback when that is all there is."""
    use = set(aioice.ice.get_host_addresses(True, True))
    networks: list[Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            if address in use:
                networks.append(ipaddress.ip_network(f"{address}/{ip.network_prefix}", strict=False))
    if "127.0.0.1" in use:
        networks.append(ipaddress.ip_network("127.0.0.0/8"))
    return networks


class PeerCaps:
    """Counts connected peers per client address and in total, and refuses past the caps."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._by_client: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self._by_client.values())

    def count(self, client: str) -> int:
        return self._by_client[client]

    def check(self, client: str, pending: int = 0) -> None:
        """Raise PeerLimitError unless `client`, which has `pending` offers on the way, may add one."""
        if self._by_client[client] + pending >= self.max_per_client:
            raise PeerLimitError(
                f"too many video connections from {client} (limit {self.max_per_client}); close a viewer tab",
                429,
            )
        if self.total >= self.max_total:
            raise PeerLimitError(
                f"server is at its limit of {self.max_total} video connections; try again later", 503
            )

    def acquire(self, client: str) -> None:
        self.check(client)
        self._by_client[client] += 1

    def release(self, client: str) -> None:
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]


class PendingOffers:
    """Answered offers that have not connected yet, oldest first, at most `max_total`.

    They count against nobody's peer cap, and when full the oldest makes room for the newest:
    a flood of offers that never connect only displaces itself, and a real viewer's offer, which
    connects within a second, gets through."""

    def __init__(self, max_total: int) -> None:
        self.max_total = max_total
        self._clients: OrderedDict[Hashable, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._clients

    def count(self, client: str) -> int:
        return sum(c == client for c in self._clients.values())

    def add(self, key: Hashable, client: str) -> Hashable | None:
        """Hold `key`; return the oldest offer it displaced, if the hold was full."""
        evicted = None
        if len(self._clients) >= self.max_total:
            evicted, _ = self._clients.popitem(last=False)
        self._clients[key] = client
        return evicted

    def remove(self, key: Hashable) -> str | None:
        """The client of `key` if it was pending."""
        return self._clients.pop(key, None)
