// Command bench measures kconsumer against a hand-written franz-go poll
// loop and the Go Kafka clients users would pick instead (IBM/sarama,
// segmentio/kafka-go, confluent-kafka-go), side by side in one run on the
// same broker.
//
// It starts a kfake broker in a process of its own, seeds one topic per
// value size (and an Avro topic, and a backlog topic for the memory cases),
// then runs every client in a child process of its own, repeatedly and
// interleaved, each reading a whole topic through a fresh consumer group.
// Each child reports records/s from client start to the last record and
// from the first record to the last, heap allocations per record and its
// peak resident set; the parent adds CPU times and writes a Markdown table,
// raw JSON and an SVG bar chart. The memory cases hold kconsumer with a slow
// or blocked handler against a topic of a million records and sample its
// resident set.
//
// Usage, in this directory:
//
//	go run .                      # everything, about three minutes
//	go run . -n 500000 -reps 5    # bigger topics, more repetitions
//	go run . -clients franz-go,kconsumer-stateless -memory=false -avro-n 0
//	go run . -profile /tmp/prof   # a CPU profile of every client run
//
// and the two halves it is made of:
//
//	go run . broker -n 500000     # prints its address as JSON, stops when stdin closes
//	go run . client -impl sarama -addr 127.0.0.1:PORT -topic values-100 -n 500000
//
// The recovery benchmark SIGKILLs and restarts one member of a consumer
// group and measures how long its partitions stall, for dynamic members,
// static members and the next-generation protocol (about five minutes;
// see recovery.go):
//
//	go run . -recovery
//	go run . -recovery -recovery-modes static:10
//	go run . member -addr 127.0.0.1:PORT -topic T -group G -mode static -id m1
//
// and, to render a saved run again (Markdown on stdout, the chart to -svg):
//
//	go run . render results/20261123-203239.json
package main

import (
	"fmt"
	"os"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "broker":
		err = brokerMain(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "client":
		err = clientMain(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "member":
		err = memberMain(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "render":
		err = renderMain(os.Args[2:])
	default:
		err = runMain(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
