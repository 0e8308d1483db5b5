package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the demo's consumer child process.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) != "" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestKilledConsumersLoseNothing(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := config{records: 4000, partitions: 4, kills: 3, work: 200 * time.Microsecond, seed: 1, dir: t.TempDir()}
	res, err := run(ctx, cfg, devnull)
	if err != nil {
		t.Fatal(err)
	}
	if res.kills != cfg.kills {
		t.Fatalf("killed %d consumers, want %d", res.kills, cfg.kills)
	}
	if res.missing != 0 || res.unique != cfg.records {
		t.Fatalf("%d of %d records never handled", res.missing, cfg.records)
	}
	if res.belowCommit != 0 {
		t.Fatalf("%d records below a committed offset were handled again", res.belowCommit)
	}
	if !res.committedOK {
		t.Fatal("committed offsets do not reach the end of the topic after a graceful stop")
	}
	t.Logf("%d records, %d kills, %d re-deliveries", cfg.records, res.kills, res.duplicates)
}
