"""Live data for viewers: decoded waveforms decimated and fanned out to many subscribers.

- :class:`LiveFanout` (:mod:`.fanout`): a store commit listener that decimates the
  waveform streams dashboards draw (ECG, pleth) and hands each subscriber one compact
  binary message per flush with the devices it may see.
- :mod:`.wire`: that message format (:func:`encode_message`, :func:`decode_message`).

See docs/dashboard.md.
"""

from __future__ import annotations

from .fanout import DEFAULT_STREAMS, LiveFanout, LiveSubscription, StreamSpec
from .wire import WavePacket, decode_message, encode_message, encode_packet

__all__ = ["LiveFanout", "LiveSubscription", "StreamSpec", "DEFAULT_STREAMS", "WavePacket",
           "encode_packet", "encode_message", "decode_message"]
