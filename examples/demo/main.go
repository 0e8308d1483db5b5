// Command demo proves, by killing real processes, that the telemetry
// platform built on kconsumer neither loses nor double-counts anything:
//
//	go run ./demo
//
// It starts the dev stack in process (Kafka, Schema Registry, MongoDB),
// builds and starts the services as child processes (current, usage, the
// field's naive usage for comparison, alerts, and a query service for each
// usage), sends a malformed record, produces telemetry, SIGKILLs usage,
// naive usage, current and alerts together at random moments (once while a
// second usage instance joins the group, during the rebalance), restarts
// them, and when everything has caught up checks:
//
//   - current serves exactly the last reading of every sensor;
//   - query's usage totals equal the ground truth exactly, to the cent of
//     an hour and a kilometre, with exactly one record per counted delta;
//   - alerts flagged exactly the readings outside the site;
//   - the malformed record is in the dead-letter topic, with its headers;
//   - the groups committed up to the end of the topic and every service
//     stopped cleanly on SIGTERM.
//
// It prints a table with the truth, kconsumer's usage and the naive usage
// side by side, and exits 1 if any check of kconsumer's services fails
// (the naive column is shown, not checked).
//
// After each kill it measures the stall of usage, alerts and current: the
// time from the SIGKILL until every partition the killed instance owned is
// owned again by a live instance of the service that has handled it up to
// the offset the killed one had reached, read from the services' /metrics
// (see stall.go). It prints one line per kill and, below the table, the
// stalls with their count, median and maximum.
//
// Flags:
//
//	-sensors 100       sensors (machines) to simulate
//	-messages 1000     readings per sensor
//	-partitions 16     partitions of sensor-data
//	-kills 6           kill rounds, at least 2; one of them during a rebalance
//	-interval 40ms     time between rounds of readings, one per sensor (0: as fast as possible)
//	-seed              seed of the simulation and the kill moments (default: time)
//	-naive=true        run the field's usage service next to kconsumer's
//	-keep              keep the stack and services running after the checks, until Ctrl-C
//	-free-ports        run the stack on free ports instead of 9092, 8081 and 27017
//	-kafka, -registry, -mongo   addresses of the in-process stack
//	-bin DIR           use the service binaries in DIR instead of building them
//	-dir DIR           keep logs, the ground truth and MongoDB's files in DIR (default: a temporary directory, removed unless -keep)
//	-timeout 10m       give up after this long
//
// KAFKA_BROKERS, SCHEMA_REGISTRY_URL and MONGODB_URI point the demo at real
// servers instead of the in-process ones; the topic must then be empty, and
// the demo drops and fills the MongoDB databases kconsumer_demo and
// kconsumer_demo_naive.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := defaultConfig()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.IntVar(&cfg.sensors, "sensors", cfg.sensors, "sensors (machines) to simulate")
	fs.IntVar(&cfg.messages, "messages", cfg.messages, "readings per sensor")
	fs.IntVar(&cfg.partitions, "partitions", cfg.partitions, "partitions of sensor-data")
	fs.IntVar(&cfg.kills, "kills", cfg.kills, "kill rounds, at least 2; one of them during a rebalance")
	fs.DurationVar(&cfg.interval, "interval", cfg.interval, "time between rounds of readings; 0 produces as fast as possible")
	fs.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "seed of the simulation and of the kill moments")
	fs.BoolVar(&cfg.naive, "naive", cfg.naive, "run the field's usage service next to kconsumer's, for comparison")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the stack and the services running after the checks, until Ctrl-C")
	freePorts := fs.Bool("free-ports", false, "run the in-process stack on free ports")
	fs.StringVar(&cfg.kafkaAddr, "kafka", cfg.kafkaAddr, "listen address of the in-process Kafka broker")
	fs.StringVar(&cfg.registryAddr, "registry", cfg.registryAddr, "listen address of the in-process Schema Registry")
	fs.StringVar(&cfg.mongoAddr, "mongo", cfg.mongoAddr, "listen address of the in-process MongoDB")
	fs.StringVar(&cfg.bin, "bin", "", "directory holding the service binaries; empty builds them")
	dir := fs.String("dir", "", "directory for logs, the ground truth and MongoDB's files (default: a temporary one)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	if *freePorts {
		cfg.kafkaAddr, cfg.registryAddr, cfg.mongoAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	}
	cfg.brokers, cfg.registryURL, cfg.mongoURI = os.Getenv("KAFKA_BROKERS"), os.Getenv("SCHEMA_REGISTRY_URL"), os.Getenv("MONGODB_URI")
	if err := cfg.check(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	cfg.dir = *dir
	if cfg.dir == "" {
		tmp, err := os.MkdirTemp("", "kconsumer-demo-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			os.Exit(1)
		}
		cfg.dir = tmp
		if !cfg.keep {
			defer os.RemoveAll(tmp)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		fmt.Fprintln(os.Stderr, "logs are in", cfg.dir)
		os.Exit(1)
	}
	if !res.ok() {
		os.Exit(1)
	}
}
