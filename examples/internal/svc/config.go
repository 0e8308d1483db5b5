// Package svc is the plumbing the example services share: configuration by
// flags and environment, logging, the HTTP server with /metrics, /healthz
// and /readyz, dependency checks with clear errors, and signal handling.
package svc

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kconsumer/kconsumer/consumer"
)

// Needs says which dependencies a service connects to; Register adds only
// their flags.
type Needs uint8

const (
	Kafka Needs = 1 << iota
	Registry
	Mongo
	Group // a consumer group member: static membership and the group protocol
)

// Config is what every service reads from flags, with the environment
// variable named in each flag's help as the default.
type Config struct {
	Brokers     []string
	RegistryURL string
	MongoURI    string
	HTTPAddr    string
	LogFormat   string
	LogLevel    slog.Level
	DialTimeout time.Duration
	InstanceID  string // static group membership; empty for a dynamic member
	NextGen     bool   // the KIP-848 group protocol
}

// Register adds the flags of the given dependencies, of the HTTP server
// (default httpAddr) and of logging to fs, defaulting to the environment.
func (c *Config) Register(fs *flag.FlagSet, httpAddr string, needs Needs) {
	if needs&Kafka != 0 {
		c.Brokers = split(env("KAFKA_BROKERS", "127.0.0.1:9092"))
		fs.Func("brokers", "comma-separated Kafka seed brokers ($KAFKA_BROKERS, default 127.0.0.1:9092)", func(s string) error {
			if c.Brokers = split(s); len(c.Brokers) == 0 {
				return errors.New("no brokers")
			}
			return nil
		})
	}
	if needs&Registry != 0 {
		fs.StringVar(&c.RegistryURL, "registry", env("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"), "Schema Registry URL ($SCHEMA_REGISTRY_URL)")
	}
	if needs&Mongo != 0 {
		fs.StringVar(&c.MongoURI, "mongo", env("MONGODB_URI", "mongodb://127.0.0.1:27017"), "MongoDB connection string ($MONGODB_URI)")
	}
	if needs&Group != 0 {
		fs.StringVar(&c.InstanceID, "instance-id", env("INSTANCE_ID", ""),
			"static group membership: a stable ID unique in the group, such as the pod name; a restart within the session timeout keeps the partitions ($INSTANCE_ID)")
		fs.BoolVar(&c.NextGen, "next-gen", env("GROUP_PROTOCOL", "") == "consumer",
			"use the KIP-848 group protocol (Kafka 4.0+; $GROUP_PROTOCOL=consumer)")
	}
	fs.StringVar(&c.HTTPAddr, "http", env("HTTP_ADDR", httpAddr), "address of the HTTP server with /metrics, /healthz and /readyz ($HTTP_ADDR); empty disables it")
	fs.StringVar(&c.LogFormat, "log-format", env("LOG_FORMAT", "text"), "log format, text or json ($LOG_FORMAT)")
	c.LogLevel = slog.LevelInfo
	if lv := os.Getenv("LOG_LEVEL"); lv != "" {
		_ = c.LogLevel.UnmarshalText([]byte(lv)) // a bad value is reported by Check
	}
	fs.TextVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error ($LOG_LEVEL)")
	c.DialTimeout = 10 * time.Second
	if needs != 0 {
		fs.DurationVar(&c.DialTimeout, "dial-timeout", c.DialTimeout, "how long to try reaching each dependency at start before giving up")
	}
}

// GroupOpts returns the consumer options of the group flags.
func (c Config) GroupOpts() []consumer.Opt {
	var opts []consumer.Opt
	if c.InstanceID != "" {
		opts = append(opts, consumer.InstanceID(c.InstanceID))
	}
	if c.NextGen {
		opts = append(opts, consumer.ServerSideBalancer())
	}
	return opts
}

// Check reports configuration that cannot work.
func (c *Config) Check() error {
	var errs []error
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("-log-format %q: want text or json", c.LogFormat))
	}
	if lv := os.Getenv("LOG_LEVEL"); lv != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(lv)); err != nil {
			errs = append(errs, fmt.Errorf("$LOG_LEVEL: %w", err))
		}
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, errors.New("-dial-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Logger returns the configured logger writing to w, tagged with the
// service's name.
func (c Config) Logger(w io.Writer, service string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	var h slog.Handler
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("service", service)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// split splits a comma-separated list, dropping empty items.
func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
