"""How a record's JSON payload is stored: compressed against a fixed dictionary of the keys records repeat.

A prediction record is ~150 bytes of JSON, most of it the same keys every frame; raw deflate primed with
those keys (`zlib`'s preset dictionary) stores it in ~45. Each commit then rewrites fewer database pages,
and the WAL's share of the SD card's writes shrinks with them. A stored payload is a BLOB whose first byte
names the dictionary; rows stored as TEXT (by an older outbox, or where compressing would not save a byte)
are read as they are. `decode(encode(text)) == text` for every string.

A dictionary, once released, never changes: rows written with it must stay readable. A better one gets the
next format byte, and `decode` keeps every earlier one.
"""

from __future__ import annotations

import zlib

# Format 1's dictionary. Deflate finds what is near the end cheapest, so the per-frame prediction comes last.
_DICTIONARY_1 = (
    b'{"level":"INFO","logger":"tinylcm.outbox","message":"lost in crash: '
    b'{"level":"WARNING","logger":"tinylcm.updater","message":"'
    b'{"detector":"feature_cvm","statistic":,"threshold":,"frame_seq":,"label":"","confidence":0.,'
    b'"vector":[0.,-0.,'
    b'{"metrics":{"latency_ms_p95":,"drift_alarm_rate":0.0,"error_rate":0.0,"frames":,"confidence":0.'
    b'},"model_version":"'
    b'{"frame_seq":,"label":"","confidence":0.,"model_label":"","model_confidence":0.,"latency_ms":,'
    b'"drift":[],"model_version":"'
)
_DICTIONARIES = {1: _DICTIONARY_1}
FORMAT = 1  # what `encode` writes
# Raw deflate (no zlib header or checksum: the WAL's frame checksums cover the bytes) with a 2 KiB window, which
# holds the dictionary, and little hash memory: ~4 us a record here, a tenth of the default's set-up.
_PACK_WBITS, _PACK_MEMLEVEL = -11, 4
_UNPACK_WBITS = -15  # reads any raw deflate stream


def encode(text: str) -> str | bytes:
    """What to store for the payload `text`: format byte + deflate, or `text` itself when that is no larger."""
    raw = text.encode()
    packer = zlib.compressobj(
        9, zlib.DEFLATED, _PACK_WBITS, _PACK_MEMLEVEL, zlib.Z_DEFAULT_STRATEGY, _DICTIONARIES[FORMAT]
    )
    packed = bytes((FORMAT,)) + packer.compress(raw) + packer.flush()
    return packed if len(packed) < len(raw) else text


def decode(value: str | bytes) -> str:
    """The payload text of a stored value (TEXT as it is, a BLOB decompressed); ValueError if it cannot be."""
    if isinstance(value, str):
        return value
    if not value or value[0] not in _DICTIONARIES:
        raise ValueError(f"unknown stored payload format {value[:1]!r}")
    unpacker = zlib.decompressobj(_UNPACK_WBITS, _DICTIONARIES[value[0]])
    try:
        raw = unpacker.decompress(value[1:]) + unpacker.flush()
    except zlib.error as exc:
        raise ValueError(f"stored payload does not decompress: {exc}") from exc
    if not unpacker.eof or unpacker.unused_data:
        raise ValueError("stored payload is truncated or has trailing bytes")
    return raw.decode()
