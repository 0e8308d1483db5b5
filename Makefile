.PHONY: demo test bench

# The crash-recovery demo: kills consumer processes and checks nothing is lost.
demo:
	cd examples && go run ./demo

# What CI runs.
test:
	bash .ci/run

# Benchmarks recorded in docs/BENCHMARKS.md.
bench:
	go test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.out
