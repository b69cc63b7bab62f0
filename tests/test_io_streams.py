"""Plain/gzip opening (``genomelab.io.streams``): compressed-stream errors name the file."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from genomelab.io.errors import FormatError
from genomelab.io.streams import (
    check_config_files,
    compressed_errors,
    existing_file,
    is_gzip,
    open_binary,
    open_text,
)

TEXT = "".join(f"chr1\t{i}\t{i + 1}\tr{i}\n" for i in range(20000))


def test_gzip_is_recognised_by_magic_bytes_not_name(tmp_path):
    hidden = tmp_path / "regions.bed"
    hidden.write_bytes(gzip.compress(TEXT.encode()))
    plain = tmp_path / "regions.bed.gz"
    plain.write_text(TEXT)
    assert is_gzip(hidden) and not is_gzip(plain)
    for path in (hidden, plain):
        with open_text(path) as fh:
            assert fh.read() == TEXT
        with open_binary(path) as fh:
            assert fh.read() == TEXT.encode()


@pytest.mark.parametrize("mode", ["lines", "read", "readinto"])
def test_truncated_gzip_names_the_file_however_it_is_read(tmp_path, mode):
    packed = gzip.compress(TEXT.encode())
    path = tmp_path / "cut.bed.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(FormatError, match=r"cut\.bed\.gz: truncated or corrupt compressed file") as info:
        if mode == "lines":
            with open_text(path) as fh:
                for _ in fh:
                    pass
        elif mode == "read":
            with open_binary(path) as fh:
                fh.read()
        else:
            buf = bytearray(1000)
            with open_binary(path) as fh:
                while fh.readinto(buf):
                    pass
    assert info.value.path == path and isinstance(info.value, ValueError)


def test_compressed_errors_wraps_code_that_inflates_by_itself(tmp_path):
    path = tmp_path / "x.gz"
    with pytest.raises(FormatError, match=r"x\.gz: truncated or corrupt compressed file \(EOFError"):
        with compressed_errors(path):
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    with pytest.raises(KeyError), compressed_errors(path):
        raise KeyError("other errors pass through")


def test_a_missing_relative_path_says_where_it_was_looked_for(tmp_path, monkeypatch):
    """A config's relative path is read from the working directory, not the config's folder:
    the error says so (it named only 'data/samples.tsv')."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        existing_file("data/samples.tsv", "sample sheet")
    assert (
        str(err.value)
        == f"sample sheet data/samples.tsv does not exist (looked for in the working directory {tmp_path})"
    )
    with pytest.raises(FileNotFoundError) as err:
        existing_file(tmp_path / "x.tsv", "sample sheet")
    assert str(err.value) == f"sample sheet {tmp_path / 'x.tsv'} does not exist"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "samples.tsv").write_text("x")
    assert existing_file("data/samples.tsv", "sample sheet") == Path("data/samples.tsv")


def test_a_misspelt_config_file_is_named_by_its_key_unless_the_run_makes_it(tmp_path):
    """deconv.infer.samples (or tissue.input.splits, tissue.predict.model) misspelt on a run
    whose outputs existed: `snakemake -n` planned only the report jobs and kept the outputs of
    the earlier file, with no error. A file under the run's own folder may be made later."""
    plasma = tmp_path / "plasma.csv"
    plasma.write_text("region,p1\ncg1,0.5\n")
    results = tmp_path / "results" / "r1"
    files = {
        "deconv.infer.samples": str(plasma),
        "deconv.infer.truth": "",
        "tissue.predict.inputs": str(results / "ingest" / "samples.tsv"),
    }
    check_config_files(files, results)
    typo = tmp_path / "plasm.csv"
    with pytest.raises(
        FileNotFoundError, match=rf"^deconv\.infer\.samples {re.escape(str(typo))} does not exist$"
    ):
        check_config_files(files | {"deconv.infer.samples": str(typo)}, results)
