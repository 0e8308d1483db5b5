package main

import (
	"errors"
	"fmt"
	"time"
)

type config struct {
	sensors    int
	messages   int
	partitions int
	kills      int
	interval   time.Duration // between the producer's rounds
	seed       uint64
	naive      bool
	keep       bool

	// Addresses of the in-process stack; a server named by brokers,
	// registryURL or mongoURI is used instead of starting one.
	kafkaAddr, registryAddr, mongoAddr string
	brokers, registryURL, mongoURI     string

	bin  string // service binaries; "" builds them
	race bool   // build them with the race detector
	dir  string // logs, ground truth, MongoDB files

	session time.Duration // group session timeout of the services
}

func defaultConfig() config {
	return config{
		sensors:      100,
		messages:     1000,
		partitions:   16,
		kills:        6,
		interval:     40 * time.Millisecond,
		naive:        true,
		kafkaAddr:    "127.0.0.1:9092",
		registryAddr: "127.0.0.1:8081",
		mongoAddr:    "127.0.0.1:27017",
		session:      2 * time.Second,
	}
}

func (c config) check() error {
	var errs []error
	if c.sensors < 1 || c.messages < 2 {
		errs = append(errs, fmt.Errorf("-sensors %d -messages %d: want at least 1 sensor and 2 readings each", c.sensors, c.messages))
	}
	if c.partitions < 1 || c.partitions > 1000 {
		errs = append(errs, fmt.Errorf("-partitions %d: want 1 to 1000", c.partitions))
	}
	if c.kills < 2 {
		errs = append(errs, fmt.Errorf("-kills %d: want at least 2, one of them during a rebalance", c.kills))
	}
	if c.interval < 0 {
		errs = append(errs, errors.New("-interval must not be negative"))
	}
	return errors.Join(errs...)
}

// databases are the MongoDB databases of the two usage services.
const (
	exactDB = "kconsumer_demo"
	naiveDB = "kconsumer_demo_naive"
)
