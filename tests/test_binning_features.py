"""Tests of the compiled FASTA path of the feature step (``kmer_kernel.iter_fasta_profiles``):
the kernel reads the file's bytes itself, so it must give exactly what the Python parser
plus the counters give, with the same errors, wherever the chunks are cut."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from genomelab.binning import kmers
from genomelab.io.fasta import read_fasta, read_record_chunks
from test_binning import random_seq

kmer_kernel = pytest.importorskip("genomelab.binning.kmer_kernel")


def tricky_fasta(rng: np.random.Generator, n_records: int = 30) -> tuple[bytes, list[tuple[str, bytes]]]:
    """FASTA text with every layout the reader must accept, and its records: blank lines
    before the first header, one-line and wrapped sequences (1 to 80 columns), CRLF,
    headers with descriptions, tabs and a '>', leading spaces before a name, spaces and
    blank lines inside sequences, lower case, N runs and IUPAC codes, records without a
    valid 6-mer, short and long records, no newline at the end of the file."""
    parts, records = [b"\n \n"], []
    for i in range(n_records):
        n = int(rng.choice([3, 5, 40, 150, 700, 3000]))
        seq = random_seq(rng, n, junk=float(rng.choice([0.0, 0.02, 0.3])))
        if i == 4:
            seq = b"NNNNACGTNNNN" * 20  # no valid 6-mer
        width = int(rng.choice([0, 1, 7, 60, 80]))
        lines = [seq] if width == 0 else [seq[j : j + width] for j in range(0, len(seq), width)]
        eol = b"\r\n" if i % 3 == 0 else b"\n"
        body = eol.join(lines)
        if i % 4 == 1 and len(body) > 4:
            body = body[:2] + b" \t" + body[2:] + eol  # spaces, a tab, a blank line
        header = [b">r%d" % i, b"> r%d" % i, b">r%d desc\tmore a>b" % i][i % 3]
        parts.append(header + eol + body + (eol if i < n_records - 1 else b""))
        records.append((f"r{i}", seq))
    return b"".join(parts), records


def profiles(blocks) -> tuple[list[str], np.ndarray, np.ndarray]:
    blocks = list(blocks)
    names = [n for b in blocks for n in b.names]
    if not blocks:
        return names, np.zeros(0, np.int64), np.zeros((0, kmers.N_FEATURES), np.float32)
    return names, np.concatenate([b.lengths for b in blocks]), np.concatenate([b.features for b in blocks])


def python_path(path: Path, min_length: int, stats: kmers.ProfileStats | None = None):
    return profiles(kmers.iter_profiles(read_fasta(path), min_length, stats=stats, engine="numpy"))


def assert_same(got, ref) -> None:
    assert got[0] == ref[0]
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[2], ref[2])


@pytest.mark.parametrize("chunk_bytes", [2, 3, 7, 64, 1000, 1 << 22])
@pytest.mark.parametrize("gz", [False, True])
def test_compiled_reader_equals_python_parser_and_numpy_counter(tmp_path, chunk_bytes, gz):
    """Records spanning chunk boundaries (tiny chunks cut inside headers, CRLF pairs and
    sequences), gzip, min_length: the same names, lengths, profiles and stats."""
    text, records = tricky_fasta(np.random.default_rng(chunk_bytes))
    path = tmp_path / ("c.fa.gz" if gz else "c.fa")
    path.write_bytes(gzip.compress(text) if gz else text)
    for min_length in (0, 100):
        ref_stats, stats = kmers.ProfileStats(), kmers.ProfileStats()
        ref = python_path(path, min_length, ref_stats)
        got = profiles(
            kmer_kernel.iter_fasta_profiles(
                path, min_length, block_contigs=4, block_bases=2000, stats=stats, chunk_bytes=chunk_bytes
            )
        )
        assert_same(got, ref)
        assert stats == ref_stats
        assert stats.n_no_kmers >= 1 and (min_length == 0 or stats.n_short >= 1)
    # and the records are those written, with line breaks and spaces removed
    written = dict(records)
    np.testing.assert_array_equal(got[1], [len(written[n]) for n in got[0]])


@pytest.mark.parametrize("threads", [2, 3])
def test_compiled_reader_in_threads_keeps_order_and_blocks_bounded(tmp_path, threads, monkeypatch):
    # Small pieces, so several are in flight and some hold more records than one block.
    monkeypatch.setattr(kmer_kernel, "PIECE_BYTES", 500)
    text, _ = tricky_fasta(np.random.default_rng(threads), n_records=60)
    path = tmp_path / "c.fa"
    path.write_bytes(text)
    ref = python_path(path, 10)
    blocks = list(
        kmer_kernel.iter_fasta_profiles(path, 10, block_contigs=3, threads=threads, chunk_bytes=3000)
    )
    assert max(len(b.names) for b in blocks) <= 3
    assert_same(profiles(blocks), ref)


def test_wrapped_and_one_line_files_give_identical_profiles(tmp_path):
    rng = np.random.default_rng(5)
    recs = [(f"c{i}", random_seq(rng, int(rng.integers(100, 5000)), junk=0.01)) for i in range(20)]
    one = tmp_path / "one.fa"
    one.write_bytes(b"".join(b">%s\n%s\n" % (n.encode(), s) for n, s in recs))
    for width, eol in ((60, b"\n"), (80, b"\r\n"), (1, b"\n")):
        wrapped = tmp_path / f"w{width}.fa"
        wrapped.write_bytes(
            b"".join(
                b">%s some description%s" % (n.encode(), eol)
                + eol.join(s[j : j + width] for j in range(0, len(s), width))
                + eol
                for n, s in recs
            )
        )
        assert_same(
            profiles(kmer_kernel.iter_fasta_profiles(wrapped, 0, chunk_bytes=777)),
            profiles(kmer_kernel.iter_fasta_profiles(one, 0)),
        )
    ref = kmers.profile_block([s for _, s in recs], engine="numpy")[0]
    np.testing.assert_array_equal(profiles(kmer_kernel.iter_fasta_profiles(one, 0))[2], ref)


def test_lower_case_equals_upper_case_and_naive_profile(tmp_path):
    rng = np.random.default_rng(6)
    seq = random_seq(rng, 2000, junk=0.01).upper()
    path = tmp_path / "c.fa"
    path.write_bytes(b">up\n" + seq + b"\n>low\n" + seq.lower() + b"\n")
    names, _, feats = profiles(kmer_kernel.iter_fasta_profiles(path))
    assert names == ["up", "low"]
    np.testing.assert_array_equal(feats[0], feats[1])
    np.testing.assert_allclose(feats[0], kmers.naive_profile(seq), rtol=0, atol=1e-6)


def test_header_names_are_the_first_word_as_read_fasta_decodes_them(tmp_path):
    path = tmp_path / "c.fa"
    path.write_bytes(b">a b c\nACGTACGT\n>\t b2\tdesc\nACGTACGT\n>caf\xe9 x\nACGTACGT\n>d\x0bx\nACGTACGT\n")
    names = profiles(kmer_kernel.iter_fasta_profiles(path))[0]
    assert names == [n for n, _ in read_fasta(path)] == ["a", "b2", "caf\ufffd", "d"]


BAD_FILES = [
    (b">a\nACGT\n>a\nACGT\n", "duplicate record name 'a'"),
    (b">a\n>b\nACGT\n", "record 'a' \\(record 1\\) has an empty sequence"),
    (b">a\nACGTAC\n>b", "record 'b' \\(record 2\\) has an empty sequence"),
    (b"ACGT\n>a\nACGT\n", "line 1: sequence before the first"),
    (b"\xef\xbb\xbf>a\nACGT\n", "line 1: starts with a byte-order mark"),
    (b"\n\n  \nACGT\n>a\nACGT\n", "line 4: sequence before the first"),
    (b">\nACGT\n", "record 1 is a header without a name"),
    (b">a\nACGTACGT\n> \r\nACGT\n", "record 2 is a header without a name"),
    (b">a\nAC>GT\n", "'>' inside its sequence"),
    (b">a\nACGTAA\n>b\nACGT\n  >c\nACGT\n", "record 'b' \\(record 2\\) has a '>' inside"),
    (b"", "no FASTA records"),
    (b"\n \r\n", "no FASTA records"),
]


@pytest.mark.parametrize("chunk_bytes", [3, 1 << 22])
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("text, problem", BAD_FILES)
def test_compiled_reader_raises_read_fastas_errors(tmp_path, text, problem, chunk_bytes, gz):
    """Plain files (memory-mapped) and gzip files (streamed through a buffer) alike."""
    path = tmp_path / "bad.fa"
    path.write_bytes(gzip.compress(text) if gz else text)
    with pytest.raises(ValueError, match=problem) as compiled:
        list(kmer_kernel.iter_fasta_profiles(path, chunk_bytes=chunk_bytes))
    assert str(path) in str(compiled.value)
    with pytest.raises(ValueError) as python:
        list(read_fasta(path, chunk_bytes=chunk_bytes))
    assert str(compiled.value) == str(python.value)


def test_a_duplicate_far_apart_and_in_threads_is_found(tmp_path):
    rng = np.random.default_rng(7)
    recs = [(f"c{i}", random_seq(rng, 300)) for i in range(50)] + [("c3", b"ACGTACGT")]
    path = tmp_path / "c.fa"
    path.write_bytes(b"".join(b">%s\n%s\n" % (n.encode(), s) for n, s in recs))
    for threads in (1, 2):
        # Both records are named: the first 'c3' is record 4 (it named record 51 only).
        with pytest.raises(
            ValueError, match="duplicate record name 'c3' \\(record 51, the name of record 4\\)"
        ):
            list(kmer_kernel.iter_fasta_profiles(path, threads=threads, chunk_bytes=1000))
    with pytest.raises(ValueError, match="duplicate record name 'c3' \\(record 51, the name of record 4\\)"):
        list(read_fasta(path, chunk_bytes=1000))


def test_records_longer_than_the_counters_take_are_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(kmer_kernel, "MAX_RECORD_BASES", 100)
    path = tmp_path / "c.fa"
    path.write_bytes(b">ok\n" + b"ACGT" * 10 + b"\n>long\n" + b"ACGT" * 30 + b"\n")
    with pytest.raises(ValueError, match="record 'long' has 120 bases"):
        list(kmer_kernel.iter_fasta_profiles(path))
    with pytest.raises(ValueError, match="a contig has 120 bases"):
        kmer_kernel.profile_block([b"ACGT" * 30])


@pytest.mark.parametrize("chunk_bytes", [2, 5, 64, 1 << 22])
@pytest.mark.parametrize("gz", [False, True])
def test_record_chunks_hold_whole_records_with_a_sentinel(tmp_path, chunk_bytes, gz):
    text, records = tricky_fasta(np.random.default_rng(1), n_records=12)
    path = tmp_path / "c.fa"
    path.write_bytes(gzip.compress(text) if gz else text)
    pieces = []
    for data, start, stop in read_record_chunks(path, chunk_bytes):
        assert data[start] == ord(">") and data[stop] == ord(">")
        pieces.append(bytes(data[start:stop]))
    assert b"".join(pieces) == text.lstrip(b" \n")
    assert all(p.endswith(b"\n") for p in pieces[:-1])  # each ends where a record ends


def test_feature_step_engines_write_identical_files(tmp_path):
    text, _ = tricky_fasta(np.random.default_rng(3), n_records=40)
    fasta = tmp_path / "c.fa.gz"
    fasta.write_bytes(gzip.compress(text))
    out = {}
    for engine, threads in (("numpy", 1), ("numba", 1), ("numba", 2)):
        path = tmp_path / f"{engine}{threads}.h5"
        kmers.write_profiles_h5(
            fasta, path, 50, block_contigs=5, chunk_rows=4, threads=threads, engine=engine
        )
        out[engine, threads] = kmers.read_profiles_h5(path)
    ref = out["numpy", 1]
    for prof in out.values():
        assert list(prof.names) == list(ref.names)
        np.testing.assert_array_equal(prof.lengths, ref.lengths)
        np.testing.assert_array_equal(prof.features, ref.features)


def test_compiled_reader_names_a_truncated_gzip_file(tmp_path):
    text, _ = tricky_fasta(np.random.default_rng(5), n_records=40)
    packed = gzip.compress(text)
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    with pytest.raises(ValueError, match="truncated or corrupt compressed file") as info:
        list(kmer_kernel.iter_fasta_profiles(path, chunk_bytes=256))
    assert str(path) in str(info.value)


def test_a_contig_of_mostly_n_is_not_profiled_by_either_engine(tmp_path):
    """min_length is about how much sequence a profile rests on: a 10 kb scaffold of 300
    bases and gaps has as few 6-mers as a 300 bp contig, so it is left out (as a contig
    without a valid 6-mer is); an N-free contig of exactly min_length, and one whose few N
    leave it min_length - 5 valid 6-mers, are profiled."""
    rng = np.random.default_rng(5)
    exact = random_seq(rng, 2000)
    gappy = random_seq(rng, 150) + b"N" * 9700 + random_seq(rng, 150)
    few_n = random_seq(rng, 1000) + b"N" + random_seq(rng, 1010)  # 995 + 1,005 = 2,000 valid 6-mers
    short_by_n = random_seq(rng, 1000) + b"N" + random_seq(rng, 1000)  # 995 + 995 = 1,990 valid 6-mers
    recs = [("exact", exact), ("gappy", gappy), ("few_n", few_n), ("short_by_n", short_by_n)]
    fasta = tmp_path / "c.fa"
    fasta.write_bytes(b"".join(b">" + n.encode() + b"\n" + s + b"\n" for n, s in recs))
    for engine in ("numpy", "numba"):
        path = tmp_path / f"{engine}.h5"
        stats = kmers.write_profiles_h5(fasta, path, 2000, engine=engine)
        prof = kmers.read_profiles_h5(path)
        assert list(prof.names) == ["exact", "few_n"], engine
        assert (stats.n_short, stats.n_no_kmers, stats.n_kept) == (0, 2, 2)
        np.testing.assert_array_equal(prof.lengths, [2000, 2011])


def test_an_assembly_with_no_contig_long_enough_names_the_setting(tmp_path):
    """Every contig under min_length: the error names the setting to lower (it said only
    'shorter than min_length', no key)."""
    rng = np.random.default_rng(6)
    fasta = tmp_path / "short.fa"
    fasta.write_bytes(b"".join(b">s%d\n" % i + random_seq(rng, 1500) + b"\n" for i in range(3)))
    with pytest.raises(
        ValueError,
        match=r"short.fa: no contig of at least 2000 bp .*\(3 records, 3 shorter than "
        r"binning\.features\.min_length",
    ):
        kmers.write_profiles_h5(fasta, tmp_path / "p.h5", 2000)
