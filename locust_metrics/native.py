"""Native histograms: Prometheus's sparse exponential buckets, the pure math (no I/O, no Locust).

A native histogram (Prometheus >= 2.40 with ``--enable-feature=native-histograms``; stable since 3.9) has no
configured bounds. At **schema** ``s`` (-4..8) bucket ``i`` (any integer) holds the observations ``v`` with
``base**(i-1) < v <= base**i``, ``base = 2**(2**-s)``: each power of two is split into ``2**s`` buckets (for
``s <= 0``, a bucket spans ``2**-s`` powers of two). Observations with ``|v| <= zero_threshold`` are counted
in the **zero bucket**. Counts are integers; only populated buckets are stored and sent (sparse). A
histogram at schema ``s`` turns into one at ``s - 1`` exactly by adding bucket pairs
(``i -> ceil(i / 2)``), which is how the number of buckets is bounded and how histograms of different
schemas are merged.

Units: Prometheus's observations are **seconds**; Locust's response times, and everything the recorder
keeps, are **milliseconds**. The functions here that take ``ms`` divide by 1000.0 first (the observation in
seconds is the double nearest to ``ms / 1000``) and then place that value exactly as client_golang's
``histogram.observe`` does: ``math.Frexp`` and a search of the bucket bounds of the mantissa, so that a value
equal to a bucket bound lands in the lower bucket (upper bounds are inclusive).

What is here:

* :func:`index_of` (seconds) and :func:`native_index` (milliseconds): the exact bucket of one observation,
  about 1 µs; the reference for everything else.
* :func:`threshold_ms`: where a bucket ends in milliseconds, exactly (the batch bucketer's table,
  ``bucketing.py``, is made of them).
* :class:`NativeHistogram`: the accumulator (schema, zero bucket, the counts in a dense ``array``), bounded by a
  maximum bucket count with client_golang's strategy (halve the resolution), exact merges across schemas, the
  spans and deltas of the protobuf exposition, a wire form for worker reports, and the quantile
  estimate of Prometheus 2.42's ``histogram_quantile``.
* :func:`upper_bound`, :func:`reduce_index`, :func:`pick_schema`, :func:`max_relative_error`.

Design notes and measurements: ``docs/native-histograms.md``.
"""

from __future__ import annotations

import collections
import math
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from itertools import chain, compress, repeat
from math import frexp, inf, ldexp
from operator import ne, sub
from typing import Any

SCHEMA_MIN = -4
"""Lowest schema Prometheus accepts (bucket growth factor 2**16 = 65536)."""

SCHEMA_MAX = 8
"""Highest schema Prometheus accepts (bucket growth factor 2**(1/256), about 1.0027)."""

ZERO_THRESHOLD = 2.0**-128
"""Width of the zero bucket, in **seconds**: observations ``v <= ZERO_THRESHOLD`` (after the recorder's
sanitizing, the only ones are ``0.0``: a negative response time counts as 0) are counted in the zero bucket.
client_golang's default (``DefNativeHistogramZeroThreshold``): a bound of every schema, so the zero bucket
never splits a regular bucket, and a histogram of ours adds up with client_golang's default ones without
Prometheus widening either zero bucket. (A threshold of 0 would work too, but would put a response time of
``1e-300`` ms in a bucket of its own a thousand powers of two below everything else.)"""

DEFAULT_SCHEMA = 6
"""Default resolution: bucket growth factor ``2**(1/64)``, about 1.0109 (see :func:`max_relative_error` and
``docs/native-histograms.md``)."""

DEFAULT_MAX_BUCKETS = 640
"""Default bound on the buckets one histogram keeps, from its lowest populated bucket to its highest (see
:class:`NativeHistogram`): 10 powers of two at schema 6 (say 1 ms to 1 s), 5 KB."""

FEW_INDICES = 64
"""Batches of at most this many bucket indices are added one by one (:meth:`NativeHistogram.add_indices`), and the
batch bucketer's batches of at most this many response times inside its table take its Python loop
(``bucketing.BatchBucketer._add_few``): below about this size, counting in C first costs more than it saves."""

_FRACTIONS_HEX = """
    0000000000000 00b1afa5abcbf 0163da9fb3335 02168143b0281 02c9a3e778061 037d42e11bbcc 04315e86e7f84 04e5f72f654b1
    059b0d3158574 0650a0e3c1f89 0706b29ddf6dd 07bd42b72a836 0874518759bc8 092bdf66607e0 09e3ecac6f383 0a9c79b1f3919
    0b5586cf9890f 0c0f145e46c85 0cc922b7247f6 0d83b23395dea 0e3ec32d3d1a2 0efa55fdfa9c5 0fb66affed31a 1073028d7233d
    11301d0125b50 11edbab5e2ab5 12abdc06c31cb 136a814f204aa 1429aaea92ddf 14e95934f312d 15a98c8a58e50 166a45471c3c1
    172b83c7d517b 17ed48695bbc0 18af9388c8de9 1972658375d2f 1a35beb6fcb75 1af99f8138a1c 1bbe084045cd3 1c82f95281c6b
    1d4873168b9aa 1e0e75eb44026 1ed5022fcd91c 1f9c18438ce4c 2063b88628cd6 212be3578a819 21f49917ddc95 22bdda27912d0
    2387a6e756238 2451ffb82140a 251ce4fb2a63e 25e85711ece74 26b4565e27cdd 2780e341ddf2a 284dfe1f56380 291ba7591bb6f
    29e9df51fdee1 2ab8a66d10f13 2b87fd0dad98f 2c57e39771b2e 2d285a6e4030b 2df961f641589 2ecafa93e2f55 2f9d24abd886a
    306fe0a31b715 31432edeeb2fd 32170fc4cd831 32eb83ba8ea32 33c08b26416ff 3496266e3fa2d 356c55f929ff0 36431a2de883a
    371a7373aa9ca 37f26231e7549 38cae6d05d864 39a401b7140ed 3a7db34e59ff6 3b57fbfec6cf4 3c32dc313a8e3 3d0e544ede172
    3dea64c123422 3ec70df1c5175 3fa4504ac801b 40822c367a024 4160a21f72e2a 423fb2709468a 431f5d950a896 43ffa3f84b9d4
    44e086061892d 45c2042a7d232 46a41ed1d0057 4786d668b3236 486a2b5c13cd0 494e1e192aed2 4a32af0d7d3de 4b17dea6db7d7
    4bfdad5362a27 4ce41b817c114 4dcb299fddd0d 4eb2d81d8abfe 4f9b2769d2ca7 508417f4531ef 516daa2cf6642 5257de83f4eef
    5342b569d4f81 542e2f4f6ad27 551a4ca5d920d 56070dde910d0 56f4736b527da 57e27dbe2c4cf 58d12d497c7fc 59c0827ff07cb
    5ab07dd485429 5ba11fba87a02 5c9268a5946b6 5d84590998b92 5e76f15ad2148 5f6a320dceb71 605e1b976dc08 6152ae6cdf6f4
    6247eb03a5584 633dd1d1929fd 6434634ccc31e 652b9febc8fb5 6623882552224 671c1c70833f5 68155d44ca972 690f4b19e9537
    6a09e667f3bcc 6b052fa75173e 6c012750bdabe 6cfdcddd47645 6dfb23c651a2e 6ef9298593ae4 6ff7df9519482 70f7466f42e85
    71f75e8ec5f73 72f8286ead089 73f9a48a58172 74fbd35d7cbfc 75feb564267c8 77024b1ab6e09 780694fde5d3e 790b938ac1cf5
    7a11473eb0186 7b17b0976cfda 7c1ed0130c131 7d26a62ff86ef 7e2f336cf4e61 7f3878491c490 80427543e1a10 814d2add106d8
    82589994cce11 8364c1eb941f6 8471a4623c7ab 857f4179f5b1f 868d99b4492eb 879cad931a435 88ac7d98a6697 89bd0a478580d
    8ace5422aa0db 8be05bad61778 8cf3216b5448b 8e06a5e0866d8 8f1ae99157736 902fed0282c8a 9145b0b91ffc5 925c353aa2fe2
    93737b0cdc5e4 948b82b5f98e4 95a44cbc8520d 96bdd9a7670b1 97d829fde4e4f 98f33e47a22a2 9a0f170ca07b8 9b2bb4d53fe0b
    9c49182a3f08f 9d674194bb8d4 9e86319e32321 9fa5e8d07f29c a0c667b5de564 a1e7aed8eb8bb a309bec4a2d32 a42c980460ad7
    a5503b23e255b a674a8af46051 a799e1330b356 a8bfe53c12e57 a9e6b5579fdbe ab0e521356eb9 ac36bbfd3f378 ad5ff3a3c2773
    ae89f995ad3ac afb4ce622f2fe b0e07298db663 b20ce6c9a8950 b33a2b84f15fa b468415b749b0 b59728de55938 b6c6e29f1c529
    b7f76f2fb5e45 b928cf22749e2 ba5b030a10647 bb8e0b79a6f1d bcc1e904bc1d0 bdf69c3f3a205 bf2c25bd71e06 c06286141b33b
    c199bdd85529a c2d1cd9fa652a c40ab5fffd078 c544778fafb20 c67f12e57d149 c7ba88988c931 c8f6d9406e7b2 ca3405751c4d8
    cb720dcef9066 ccb0f2e6d1672 cdf0b555dc3f6 cf3155b5bab70 d072d4a078979 d1b532b08c966 d2f87080d89ee d43c8eacaa1d3
    d5818dcfba486 d6c76e862e6d2 d80e316c98396 d955d71ff6074 da9e603db3284 dbe7cd63a8313 dd321f301b45e de7d5641c0656
    dfc97337b9b5d e11676b197d16 e264614f5a126 e3b333b16ee0f e502ee78b3ff5 e653924676d75 e7a51fbc74c81 e8f7977cdb73e
    ea4afa2a490d8 eb9f4867cca6d ecf482d8e67ee ee4aaa218850e efa1bee615a26 f0f9c1cb64129 f252b376bba95 f3ac948dd7272
    f50765b6e453e f6632798844f6 f7bfdad9cbe10 f91d802243c86 fa7c1819e90d6 fbdba3692d512 fd3c22b8f71ee fe9d96b2a23d6
"""
# The 256 bucket bounds of schema 8 within one power of two, as mantissas: bound j is 0x1.<hex>p-1, i.e.
# base**j / 2 in [0.5, 1). These are the exact doubles Prometheus uses (its bucket bounds are
# ldexp(fraction, exponent)), read from Prometheus 2.42's HTTP API as the bounds of a schema-8 histogram's
# buckets 1..256; tests/test_native_histograms.py reads them again from a running Prometheus and compares.
# They are not all the doubles nearest to 2**(j/256) / 2 (most differ from those, by up to 4 units in the
# last place), which is why they are data, not computed. Schema s < 8 uses every
# 2**(8-s)-th entry (the tables are nested).
_FRACTIONS_8: tuple[float, ...] = tuple(float.fromhex(f"0x1.{m}p-1") for m in _FRACTIONS_HEX.split())
assert len(_FRACTIONS_8) == 256

FRACTIONS: dict[int, tuple[float, ...]] = {s: _FRACTIONS_8[:: 1 << (8 - s)] for s in range(0, SCHEMA_MAX + 1)}
"""``FRACTIONS[s]`` (0 <= s <= 8): the ``2**s`` bucket bounds within ``[0.5, 1)``; bucket ``i`` of schema ``s``
has the upper bound ``ldexp(FRACTIONS[s][i % 2**s], i // 2**s + 1)``."""


def check_schema(schema: int) -> int:
    """``schema`` if it is an int in ``[SCHEMA_MIN, SCHEMA_MAX]``; else ``ValueError`` naming it."""
    if type(schema) is not int or not SCHEMA_MIN <= schema <= SCHEMA_MAX:
        raise ValueError(f"native histogram schema {schema!r}: must be an integer from {SCHEMA_MIN} to {SCHEMA_MAX}")
    return schema


# ------------------------------------------------------------------------------------------------ bucket math
def index_of(seconds: float, schema: int) -> int | None:
    """The native bucket of an observation in **seconds**, or None for the zero bucket.

    Exactly client_golang's ``histogramCounts.observe``: ``frac, exp = frexp(v)``; for ``schema > 0`` the
    first bound in :data:`FRACTIONS` that is ``>= frac``, plus ``(exp - 1) * 2**schema``; for ``schema <= 0``
    ``exp`` (one less for an exact power of two), divided by ``2**-schema`` rounding up. A value equal to a
    bucket's upper bound is in that bucket.

    Args:
        seconds: a finite observation ``>= 0``; ``<= ZERO_THRESHOLD`` gives the zero bucket (None).
        schema: ``SCHEMA_MIN..SCHEMA_MAX`` (not checked here: this is called per observation).

    Raises:
        ValueError: for NaN, an infinity or a negative value (not observations of ours: the recorder keeps
            NaN and infinities out of histograms and counts negative response times as 0).
    """
    if not seconds > ZERO_THRESHOLD:
        if seconds >= 0.0:
            return None
        raise ValueError(f"not a native histogram observation of ours: {seconds!r}")
    if seconds == inf:
        raise ValueError("not a native histogram observation of ours: inf")
    frac, exp = frexp(seconds)
    if schema > 0:
        return bisect_left(FRACTIONS[schema], frac) + ((exp - 1) << schema)
    if frac == 0.5:
        exp -= 1
    return (exp + (1 << -schema) - 1) >> -schema


def native_index(ms: float, schema: int) -> int | None:
    """The native bucket (schema ``schema``, observations in seconds) of a response time of ``ms``
    **milliseconds**: :func:`index_of` of ``ms / 1000.0``; None for the zero bucket.

    Hostile values as the recorder's careful path treats them for the classic histogram: a negative time
    (counted as 0 there) gives the zero bucket; NaN and infinities are not observations (the recorder does
    not put them in the histogram): ``ValueError``. A huge time is capped by the recorder
    (``MAX_RESPONSE_TIME_MS``) before it gets here; any finite value works.
    """
    if not ms > 0.0:
        if ms <= 0.0 and ms != -inf:
            return None
        raise ValueError(f"not a response time for a histogram: {ms!r}")
    return index_of(ms / 1000.0, schema)


def upper_bound(index: int, schema: int) -> float:
    """The upper bound (inclusive), in **seconds**, of bucket ``index`` at ``schema``: ``base**index`` as the
    double Prometheus uses; ``inf`` past the largest double. Its lower bound is ``upper_bound(index - 1)``."""
    try:
        if schema > 0:
            return ldexp(FRACTIONS[schema][index & ((1 << schema) - 1)], (index >> schema) + 1)
        return ldexp(1.0, index << -schema)
    except OverflowError:
        return inf


def reduce_index(index: int, by: int) -> int:
    """The bucket at ``schema - by`` that holds bucket ``index`` of ``schema``: ``ceil(index / 2**by)``
    (client_golang's ``doubleBucketWidth`` applied ``by`` times: ``(index + 1) // 2`` each)."""
    return -((-index) >> by)


def index_range(schema: int) -> tuple[int, int]:
    """The lowest and highest bucket index an observation of a double can have at ``schema`` (the zero bucket
    apart): those of the smallest double above ``ZERO_THRESHOLD`` and of the largest finite double. An index
    outside is not an observation's (a worker delta that has one is malformed): about ``-128 * 2**schema`` to
    ``1024 * 2**schema``."""
    range_ = _INDEX_RANGES.get(schema)
    if range_ is None:
        low = index_of(math.nextafter(ZERO_THRESHOLD, inf), schema)
        high = index_of(sys.float_info.max, schema)
        assert low is not None and high is not None
        range_ = _INDEX_RANGES[schema] = (low, high)
    return range_


_INDEX_RANGES: dict[int, tuple[int, int]] = {}


def pick_schema(bucket_factor: float) -> int:
    """The schema for a bucket growth factor, as client_golang's ``NativeHistogramBucketFactor``: the largest
    ``s`` in ``SCHEMA_MIN..SCHEMA_MAX`` with ``2**(2**-s) <= bucket_factor`` (a factor below ``2**(2**-8)``
    still gives 8). ``ValueError`` for a factor ``<= 1`` or not finite."""
    if not (isinstance(bucket_factor, (int, float)) and 1 < bucket_factor < inf):
        raise ValueError(f"native histogram bucket factor {bucket_factor!r}: must be a number greater than 1")
    floor = math.floor(math.log2(math.log2(bucket_factor)))
    return max(SCHEMA_MIN, min(SCHEMA_MAX, -floor))


def max_relative_error(schema: int) -> float:
    """Largest relative error of a quantile estimated from one bucket of ``schema``, whatever Prometheus
    interpolates within the bucket: ``base - 1`` (the estimate and the true value lie in the same bucket
    ``(L, base * L]``). Schema 5: 2.19%, 6: 1.09%, 7: 0.54%, 8: 0.27%."""
    base: float = 2.0 ** (2.0**-schema)  # float ** float is typed Any (it may be complex); here it is a float
    return base - 1.0


# ------------------------------------------------------------------------------------------------ hot path
def _positive_index(ms: float, schema: int) -> int:
    """:func:`native_index` of a response time ``ms > 0`` (so never the zero bucket); ``ValueError`` if it is
    in the zero bucket after all."""
    index = native_index(ms, schema)
    if index is None:
        raise ValueError(f"{ms!r} ms is in the zero bucket: not a response time > 0")
    return index


def threshold_ms(index: int, schema: int) -> float:
    """The largest response time (ms) whose :func:`native_index` is ``<= index`` (``index`` not the zero
    bucket's: the upper bound of bucket ``index`` is > 0): where the bucket of ``index`` ends in milliseconds,
    exactly (the double nearest ``upper_bound(index) * 1000``, moved by ulps until :func:`native_index` agrees;
    :class:`~locust_metrics.bucketing.BatchBucketer`'s table)."""
    ms = upper_bound(index, schema) * 1000.0
    while _positive_index(ms, schema) > index:
        ms = math.nextafter(ms, -inf)
    while True:
        up = math.nextafter(ms, inf)
        if _positive_index(up, schema) > index:
            return ms
        ms = up


def _count_elements_fallback(mapping: dict[Any, int], iterable: Iterable[Any]) -> None:
    """``mapping[item] += 1`` for each item (what ``collections._count_elements`` does in C)."""
    get = mapping.get
    for item in iterable:
        mapping[item] = get(item, 0) + 1


# collections' C helper behind Counter (CPython 3.2+); a Python equivalent where it is missing
_count_elements: Any = getattr(collections, "_count_elements", _count_elements_fallback)


# ------------------------------------------------------------------------------------------------ accumulator
def _zeros(n: int) -> array[int]:
    """``n`` zero counts (``array("Q")``, 8 bytes each)."""
    return array("Q", bytes(8 * n))


class NativeHistogram:
    """The native buckets of one histogram: schema, zero bucket and bucket counts, bounded in size.

    Count and sum are the caller's (a histogram message carries one ``sample_count`` and one
    ``sample_sum`` for its classic and native buckets alike); :attr:`count` is what the buckets hold, which
    must equal the classic count of the same observations.

    Storage is dense: one ``array('q')`` of counts (8 bytes a bucket) from the lowest populated bucket to the
    highest, empty buckets between them included (a dict took about 74 bytes a populated bucket; see
    ``docs/native-histograms.md``). :attr:`buckets` gives the populated ones as ``{index: count}``.

    Attributes:
        schema: the current resolution; only ever lowered (by the bound below, :meth:`reduce_to`, or a
            merge with a coarser histogram), since counters must not go backwards.
        zero_count: observations in the zero bucket (``<= ZERO_THRESHOLD`` seconds).
        max_buckets: most buckets kept, from the lowest populated bucket to the highest, empty ones between
            included (the :attr:`width`: the memory, 8 bytes a bucket); 0 = unbounded. When a new observation
            would exceed it, the resolution is first halved (schema - 1, adding bucket pairs) as many times as
            needed, or down to ``SCHEMA_MIN``: client_golang's strategy with ``NativeHistogramMaxBucketNumber``
            (without its reset or zero-bucket widening, which are off by default there too), but counting the
            buckets kept rather than the populated ones, which bounds the memory whatever the latencies (a far
            outlier lowers the schema where client_golang would keep it). Totals are unchanged: only bucket
            boundaries are dropped.
    """

    __slots__ = ("schema", "zero_count", "max_buckets", "_offset", "_counts")

    zero_threshold = ZERO_THRESHOLD

    def __init__(self, schema: int = DEFAULT_SCHEMA, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        self.schema = check_schema(schema)
        if type(max_buckets) is not int or max_buckets < 0:
            raise ValueError(f"native histogram max buckets {max_buckets!r}: must be an integer >= 0 (0: no limit)")
        self.max_buckets = max_buckets
        self.zero_count = 0
        self._offset = 0  # the bucket index of _counts[0]
        self._counts: array[int] = _zeros(0)  # empty, or its first and last counts > 0

    # ---------------------------------------------------------------- reading
    @property
    def count(self) -> int:
        """Observations held: zero bucket plus buckets."""
        return self.zero_count + sum(self._counts)

    @property
    def width(self) -> int:
        """Buckets kept: from the lowest populated one to the highest, empty ones between included (0 when
        empty). At most :attr:`max_buckets` (see the class), unless the schema is ``SCHEMA_MIN``."""
        return len(self._counts)

    @property
    def populated(self) -> int:
        """Populated buckets (count > 0), the zero bucket not included."""
        counts = self._counts
        return len(counts) - counts.count(0)

    def _indices(self) -> list[int]:
        """The populated buckets' indices, ascending."""
        counts = self._counts
        return list(compress(range(self._offset, self._offset + len(counts)), counts))

    @property
    def buckets(self) -> dict[int, int]:
        """The populated buckets as a new ``{index: count}`` dict (counts > 0), in index order. Setting it
        replaces all the buckets (counts must be ints > 0; for tests) and applies :attr:`max_buckets`."""
        return dict(zip(self._indices(), filter(None, self._counts)))

    @buckets.setter
    def buckets(self, buckets: Mapping[int, int]) -> None:
        self._offset, self._counts = 0, _zeros(0)
        self._add_map(dict(buckets))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NativeHistogram):
            return NotImplemented
        return (self.schema, self.zero_count, self.buckets) == (other.schema, other.zero_count, other.buckets)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (f"NativeHistogram(schema={self.schema}, zero_count={self.zero_count}, buckets={self.populated}, "
                f"width={self.width})")

    def copy(self) -> NativeHistogram:
        """An independent copy (e.g. for a scrape's snapshot): one ``memcpy`` of the counts."""
        new = NativeHistogram.__new__(NativeHistogram)
        new.schema, new.zero_count, new.max_buckets, new._offset, new._counts = (
            self.schema, self.zero_count, self.max_buckets, self._offset, self._counts[:])
        return new

    def spans_and_deltas(self) -> tuple[list[tuple[int, int]], list[int]]:
        """The populated buckets as protobuf's ``positive_span`` ``(offset, length)`` pairs and
        ``positive_delta`` values, as client_golang's ``makeBuckets`` writes them: buckets in index order; a
        span's offset is the gap since the previous span's end (for the first: its starting index); gaps of
        one or two buckets are filled with empty buckets instead of a new span; each delta is a bucket's
        count minus the previous bucket's (the first: minus 0). ``([], [])`` when empty."""
        if not self._counts:
            return [], []
        keys = self._indices()
        counts = list(filter(None, self._counts))
        # indices (in keys) of the buckets that follow a gap; usually few: the loop below runs once per gap
        breaks = list(compress(range(1, len(keys)), map(ne, map(sub, keys[1:], keys), repeat(1))))
        spans = []
        if breaks:
            filled: list[int] = []
            offset, length, start = keys[0], 0, 0
            for end in breaks:
                gap = keys[end] - keys[end - 1] - 1
                filled += counts[start:end]
                length += end - start
                if gap > 2:  # a new span
                    spans.append((offset, length))
                    offset, length = gap, 0
                else:  # one or two empty buckets inside the span
                    filled += [0] * gap
                    length += gap
                start = end
            filled += counts[start:]
            spans.append((offset, length + len(keys) - start))
            counts = filled
        else:
            spans.append((keys[0], len(keys)))
        return spans, list(map(sub, counts, [0, *counts[:-1]]))

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1) in **seconds**, as Prometheus 2.42's ``histogram_quantile`` computes it
        for a native histogram: the bucket where the cumulative count reaches ``q * count``, then linear
        interpolation between its bounds (the zero bucket's lower bound is 0). NaN when empty; ``-inf`` /
        ``inf`` for ``q < 0`` / ``q > 1``. For checks and accuracy studies; Prometheus does it at query time."""
        if q != q:
            return math.nan
        if q < 0:
            return -inf
        if q > 1:
            return inf
        total = self.count
        if total == 0:
            return math.nan
        rank = q * total
        cumulative = 0
        bucket = (0.0, 0.0, 0)
        for bucket in self._all_buckets():
            cumulative += bucket[2]
            if cumulative >= rank:
                break
        lower, upper, bucket_count = bucket
        if cumulative < rank:
            return upper
        rank -= cumulative - bucket_count
        return lower + (upper - lower) * (rank / bucket_count)

    def _all_buckets(self) -> Iterable[tuple[float, float, int]]:
        """``(lower, upper, count)`` in order: the zero bucket (lower bound 0), then the populated buckets."""
        if self.zero_count:
            yield 0.0, ZERO_THRESHOLD, self.zero_count
        schema = self.schema
        for index, n in self.buckets.items():
            yield upper_bound(index - 1, schema), upper_bound(index, schema), n

    # ---------------------------------------------------------------- writing
    def observe(self, ms: float) -> bool:
        """Count one response time of ``ms`` **milliseconds** (see :func:`native_index`); False (nothing
        counted) for NaN and infinities, which are not observations. Applies :attr:`max_buckets`.
        For the careful path and tests; the listener's response times are counted in batches
        (:meth:`add_indices`)."""
        if ms != ms or ms in (inf, -inf):
            return False
        index = native_index(ms, self.schema)
        if index is None:
            self.zero_count += 1
        else:
            self._add_map({index: 1})
        return True

    def add_counts(
        self,
        counts: Mapping[int, int] | Mapping[int | None, int] | Iterable[tuple[int | None, int]],
        schema: int,
    ) -> int:
        """Add bucket counts recorded at ``schema``: ``{index: n}`` (or ``(index, n)`` pairs), the index None
        meaning the zero bucket; zero counts are skipped. A finer ``schema`` is reduced to ours on the way; a
        coarser one first reduces ours to it. Then :attr:`max_buckets` applies. Returns the observations
        added. Exact: every count lands in the bucket that holds its bucket.

        ``counts`` is only read: the caller zeroes a hot record itself (keeping its keys spares the
        allocations of the next interval; drop them if it has many)."""
        check_schema(schema)
        if schema < self.schema:
            self.reduce_to(schema)
        by = schema - self.schema
        items: Iterable[tuple[int | None, int]] = counts.items() if isinstance(counts, Mapping) else counts
        reduced: dict[int, int] = {}
        get = reduced.get
        zero = added = 0
        for index, n in items:
            if n:
                added += n
                if index is None:
                    zero += n
                    continue
                if by:
                    index = -((-index) >> by)
                reduced[index] = get(index, 0) + n
        self.zero_count += zero
        self._add_map(reduced)
        return added

    def add_indices(self, indices: Iterable[int | None]) -> None:
        """Count one observation per item of ``indices``: bucket indices at this histogram's :attr:`schema`,
        None for the zero bucket (:class:`~locust_metrics.bucketing.BatchBucketer`'s batches). Then
        :attr:`max_buckets` applies.

        A batch of up to :data:`FEW_INDICES` without the zero bucket is added one index at a time (one Python
        step each); a larger one is first counted in C (``collections``' element counter, what ``Counter``
        uses, a few tens of ns per item) into a dict, then added one bucket at a time."""
        if type(indices) is not tuple and type(indices) is not list:
            indices = list(indices)
        if len(indices) <= FEW_INDICES:
            try:
                lo, hi = min(indices), max(indices)  # TypeError: the zero bucket (None) among them
            except (TypeError, ValueError):  # (ValueError: no indices)
                lo = None
            if lo is not None:  # (also None: one index, the zero bucket's)
                few: Any = indices  # all ints here
                schema = self.schema
                store, offset = self.reserve(lo, hi, schema)
                if schema != self.schema:  # (reserve lowered it)
                    few = [reduce_index(index, schema - self.schema) for index in few]
                for index in few:
                    store[index - offset] += 1
                return
        counted: dict[Any, int] = {}
        _count_elements(counted, indices)
        if None in counted:  # the zero bucket's count
            self.zero_count += counted.pop(None)
        self._add_map(counted)

    def reserve(self, lo: int, hi: int, schema: int) -> tuple[array[int], int]:
        """Make the store hold the buckets ``lo..hi`` of ``schema`` (>= :attr:`schema`; the bucketer's), as
        :meth:`add_indices` does before it counts (lowering :attr:`schema` first if :attr:`max_buckets` needs it), and
        return ``(store, offset)``: the caller then counts an observation of bucket ``i`` **at the schema this
        histogram has after the call** by ``store[i - offset] += 1`` (the bucketer's loop over a small batch). Valid
        until the histogram changes otherwise. ``ValueError`` for a schema finer than ``schema``."""
        by = schema - self.schema
        if by < 0:
            raise ValueError(f"a histogram at schema {self.schema} cannot hold buckets of schema {schema}")
        if by:
            lo, hi = -((-lo) >> by), -((-hi) >> by)
        store, offset = self._counts, self._offset
        if lo < offset or hi - offset >= len(store):
            self._widen(lo, hi)
            store, offset = self._counts, self._offset
        return store, offset

    def _add_map(self, counts: dict[int, int]) -> None:
        """Add ``{index: n}`` (indices at :attr:`schema`, every ``n > 0``), widening the store first
        (:meth:`_widen`)."""
        if not counts:
            return
        by = self._widen(min(counts), max(counts))
        if by:
            reduced: dict[int, int] = {}
            for index, n in counts.items():
                index = -((-index) >> by)
                reduced[index] = reduced.get(index, 0) + n
            counts = reduced
        store, offset = self._counts, self._offset
        for index, n in counts.items():
            store[index - offset] += n

    def _widen(self, lo: int, hi: int) -> int:
        """Make the store hold the buckets ``lo..hi`` (at :attr:`schema`) besides its own: when that would be
        more than :attr:`max_buckets` wide, lower the schema first as far as needed (so a far outlier never
        allocates more than the bound), then add empty buckets at either end. Returns by how many steps the
        schema went down (the caller reduces its indices by as many: :func:`reduce_index`)."""
        store = self._counts
        if store:
            lo, hi = min(lo, self._offset), max(hi, self._offset + len(store) - 1)
        by, widest = 0, self.max_buckets
        if hi - lo >= widest > 0 and self.schema > SCHEMA_MIN:
            by = 1
            while -((-hi) >> by) - -((-lo) >> by) >= widest and self.schema - by > SCHEMA_MIN:
                by += 1
            self.reduce_to(self.schema - by)
            lo, hi, store = -((-lo) >> by), -((-hi) >> by), self._counts
        if not store:
            self._offset, self._counts = lo, _zeros(hi - lo + 1)
        else:
            offset = self._offset
            if lo < offset:
                store[0:0] = _zeros(offset - lo)
                self._offset = offset = lo
            if hi >= offset + len(store):
                store.extend(_zeros(hi - offset - len(store) + 1))
        return by

    def merge(self, other: NativeHistogram) -> None:
        """Add ``other``'s counts (exact: the finer of the two is reduced to the coarser schema first)."""
        self.add_counts(other.buckets, other.schema)
        self.zero_count += other.zero_count

    def reduce_to(self, schema: int) -> None:
        """Lower the resolution to ``schema`` (<= the current one): bucket ``i`` goes to
        :func:`reduce_index` ``(i, by)``; counts add up, totals are unchanged."""
        check_schema(schema)
        by = self.schema - schema
        if by < 0:
            raise ValueError(f"cannot raise a native histogram's schema from {self.schema} to {schema}")
        if by == 0:
            return
        store = self._counts
        if store:
            indices = self._indices()
            offset = -((-indices[0]) >> by)
            reduced = _zeros(-((-indices[-1]) >> by) - offset + 1)
            for index, n in zip(indices, filter(None, store)):
                reduced[-((-index) >> by) - offset] += n
            self._offset, self._counts = offset, reduced
        self.schema = schema

    # ---------------------------------------------------------------- wire (worker reports)
    def to_wire(self) -> list[Any]:
        """``[schema, zero_count, [index, count, index, count, ...]]``: ints and lists only (msgpack-safe)."""
        return [self.schema, self.zero_count, list(chain.from_iterable(zip(self._indices(), filter(None, self._counts))))]

    @classmethod
    def from_wire(cls, wire: Any, max_buckets: int = DEFAULT_MAX_BUCKETS) -> NativeHistogram:
        """The histogram of :meth:`to_wire`'s output; ``ValueError`` if malformed (:func:`check_wire`,
        :func:`wire_pairs_ok`)."""
        schema, zero_count, flat = check_wire(wire)
        if not wire_pairs_ok(schema, flat):
            raise ValueError(f"malformed native histogram: {str(wire)[:200]}")
        histogram = cls(schema, max_buckets)
        histogram.zero_count = zero_count
        histogram.add_counts(zip(flat[::2], flat[1::2]), schema)
        return histogram


def check_wire(wire: Any) -> tuple[int, int, list[Any]]:
    """The shape of a histogram in :meth:`NativeHistogram.to_wire`'s form (a worker's delta): ``(schema, zero
    count, flat)`` when it is a sequence of three, the schema an int in ``SCHEMA_MIN..SCHEMA_MAX``, the zero
    count an int ``>= 0`` and ``flat`` a list of even length; ``ValueError`` ("malformed native histogram")
    otherwise. Constant time: the pairs in ``flat`` are checked by :func:`wire_pairs_ok` (the master checks a
    report's shapes when it merges it, their pairs later, when a scrape adds them, in slices)."""
    try:
        schema, zero_count, flat = wire
        if not (type(flat) is list and not len(flat) % 2 and type(schema) is int and SCHEMA_MIN <= schema <= SCHEMA_MAX
                and type(zero_count) is int and zero_count >= 0):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"malformed native histogram: {str(wire)[:200]}") from None
    return schema, zero_count, flat


def wire_pairs_ok(schema: int, flat: list[Any]) -> bool:
    """Whether ``flat``, ``[index, count, index, count, ...]`` of a wire histogram at ``schema`` (checked by
    :func:`check_wire`), holds only ints (not bools), counts ``>= 0`` and indices inside :func:`index_range`
    (an index outside is no observation's, and the dense store would allocate for it). A few C-level passes:
    about 0.1 µs per pair."""
    low, high = index_range(schema)
    return (set(map(type, flat)) <= {int} and min(flat[1::2], default=0) >= 0
            and low <= min(flat[::2], default=low) and max(flat[::2], default=high) <= high)

__all__ = [
    "DEFAULT_MAX_BUCKETS",
    "DEFAULT_SCHEMA",
    "FRACTIONS",
    "SCHEMA_MAX",
    "SCHEMA_MIN",
    "ZERO_THRESHOLD",
    "NativeHistogram",
    "check_schema",
    "check_wire",
    "index_of",
    "index_range",
    "max_relative_error",
    "native_index",
    "pick_schema",
    "threshold_ms",
    "reduce_index",
    "upper_bound",
    "wire_pairs_ok",
]
