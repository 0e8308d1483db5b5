package recovery

import "github.com/kconsumer/kconsumer/consumer"

// A Strategy decides where a Consumer starts reading after a restart and
// how it treats records it has already seen: FullReplay, CheckpointSkip or
// Stateless. Attach it with consumer.With, first, so that records it skips
// reach no other plugin; it also tells the Consumer when its position is
// ready to serve, which Consumer.Ready and a lag monitor's /readyz report.
type Strategy interface {
	consumer.Plugin
	// Ready returns nil once the position is ready to serve, and an error
	// wrapping ErrNotReady before.
	Ready() error
}
