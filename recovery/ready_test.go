package recovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/recovery"
)

// A group can have more members than partitions: the ones given nothing
// are idle, not broken, and must not hold back a rollout.
func TestMemberWithoutPartitionsIsReady(t *testing.T) {
	for name, strategy := range map[string]func() interface {
		recovery.Strategy
		Ready() error
	}{
		"Stateless": func() interface {
			recovery.Strategy
			Ready() error
		} {
			return recovery.NewStateless()
		},
		"CheckpointSkip": func() interface {
			recovery.Strategy
			Ready() error
		} {
			return recovery.NewCheckpointSkip(recovery.NewMemoryStore(0))
		},
	} {
		t.Run(name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 1, topic)
			nop := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
			// Each member's assignments, in a buffer the callback never
			// blocks on: kgo calls it for every member on every rebalance.
			assigned := func(owned chan map[string][]int32) consumer.Opt {
				return consumer.OnAssigned(func(_ context.Context, ps map[string][]int32) {
					select {
					case owned <- ps:
					default:
					}
				})
			}
			ownedFirst, ownedSecond := make(chan map[string][]int32, 16), make(chan map[string][]int32, 16)
			first, second := strategy(), strategy()
			kafkatest.Run(t, newConsumer(t, nop, testOpts(cluster, "g", first, assigned(ownedFirst))...))
			kafkatest.WaitFor(t, 20*time.Second, "the first member ready", func() bool { return first.Ready() == nil })
			select {
			case <-ownedFirst:
			case <-time.After(20 * time.Second):
				t.Fatal("the first member was never assigned")
			}
			kafkatest.Run(t, newConsumer(t, nop, testOpts(cluster, "g", second, assigned(ownedSecond))...))
			select {
			case ps := <-ownedSecond:
				if len(ps[topic]) != 0 {
					t.Fatalf("the second member got %v of a one-partition topic", ps)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the second member never joined")
			}
			kafkatest.WaitFor(t, 20*time.Second, "the member without partitions ready", func() bool { return second.Ready() == nil })
		})
	}
}
