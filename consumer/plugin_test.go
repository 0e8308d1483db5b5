package consumer_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// tracer is a plugin that records what it sees, in a log shared by all.
type tracer struct {
	name  string
	log   *[]string
	mu    *sync.Mutex
	fail  error
	group string
}

func (p *tracer) note(s string) {
	p.mu.Lock()
	*p.log = append(*p.log, s)
	p.mu.Unlock()
}

func (p *tracer) Attach(a *consumer.Attachment) error {
	p.group = a.Group()
	if p.fail != nil {
		return p.fail
	}
	p.note(p.name + " attached")
	a.OnAbort(func() { p.note(p.name + " aborted") })
	a.Use(func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			p.note(p.name + " in")
			return next.Handle(ctx, r)
		})
	})
	a.OnStop(func(err error) { p.note(p.name + " stopped") })
	return nil
}

func TestPluginsWrapInOrderOutsideUse(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 1, 1)
	var (
		log []string
		mu  sync.Mutex
	)
	a := &tracer{name: "a", log: &log, mu: &mu}
	b := &tracer{name: "b", log: &log, mu: &mu}
	handled := make(chan struct{})
	var once sync.Once
	h := consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
		mu.Lock()
		log = append(log, "handler")
		mu.Unlock()
		once.Do(func() { close(handled) })
		return nil
	})
	use := func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			mu.Lock()
			log = append(log, "use in")
			mu.Unlock()
			return next.Handle(ctx, r)
		})
	}
	c, err := consumer.New(h, testOpts(cluster, "g", consumer.Use(use), consumer.With(a, b))...)
	if err != nil {
		t.Fatal(err)
	}
	if a.group != "g" || b.group != "g" {
		t.Errorf("plugins learnt groups %q and %q, want g", a.group, b.group)
	}
	if got := c.Plugins(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("Plugins() = %v, want [a b]", got)
	}
	stop := kafkatest.Run(t, c)
	select {
	case <-handled:
	case <-time.After(20 * time.Second):
		t.Fatal("record not handled")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"a attached", "b attached", "a in", "b in", "use in", "handler", "a stopped", "b stopped"}
	if !slices.Equal(log, want) {
		t.Errorf("log = %q, want %q", log, want)
	}
}

func TestFailedAttachLetsEarlierPluginsGo(t *testing.T) {
	var (
		log []string
		mu  sync.Mutex
	)
	a := &tracer{name: "a", log: &log, mu: &mu}
	bad := &tracer{name: "bad", log: &log, mu: &mu, fail: errors.New("needs a group")}
	_, err := consumer.New(nop, consumer.Topics("t"), consumer.With(a, bad))
	if !errors.Is(err, consumer.ErrInvalidOption) || !strings.Contains(err.Error(), "needs a group") {
		t.Fatalf("New = %v, want an ErrInvalidOption carrying the plugin's error", err)
	}
	if want := []string{"a attached", "a aborted"}; !slices.Equal(log, want) {
		t.Errorf("log = %q, want %q", log, want)
	}
	if _, err := consumer.New(nop, consumer.Topics("t"), consumer.With(a, nil)); !errors.Is(err, consumer.ErrInvalidOption) {
		t.Errorf("nil plugin: New = %v, want ErrInvalidOption", err)
	}
}

func TestOnePluginSetsStartOffsets(t *testing.T) {
	positioner := consumer.PluginFunc(func(a *consumer.Attachment) error {
		return a.StartOffsets(func(_ context.Context, o map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			return o, nil
		})
	})
	if _, err := consumer.New(nop, consumer.Topics("t"), consumer.Group("g"), consumer.With(positioner)); err != nil {
		t.Fatalf("one positioner: %v", err)
	}
	_, err := consumer.New(nop, consumer.Topics("t"), consumer.Group("g"), consumer.With(positioner, positioner))
	if !errors.Is(err, consumer.ErrInvalidOption) || !strings.Contains(err.Error(), "both position partitions") {
		t.Errorf("two positioners: New = %v, want an ErrInvalidOption saying both position partitions", err)
	}
}

func TestReadyIsEveryPluginsReadiness(t *testing.T) {
	var notYet = errors.New("catching up")
	var mu sync.Mutex
	state := notYet
	c, err := consumer.New(nop, consumer.Topics("t"), consumer.With(
		consumer.PluginFunc(func(a *consumer.Attachment) error { a.Ready(func() error { return nil }); return nil }),
		consumer.PluginFunc(func(a *consumer.Attachment) error {
			a.Ready(func() error { mu.Lock(); defer mu.Unlock(); return state })
			return nil
		}),
	))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(); !errors.Is(err, notYet) {
		t.Errorf("Ready = %v, want the second plugin's error", err)
	}
	mu.Lock()
	state = nil
	mu.Unlock()
	if err := c.Ready(); err != nil {
		t.Errorf("Ready = %v once every plugin is ready", err)
	}
}

type ctxKey struct{}

func TestHandlerContextCarriesRunValues(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 1, 1)
	got := make(chan any, 1)
	h := consumer.HandlerFunc(func(ctx context.Context, _ *kgo.Record) error {
		select {
		case got <- ctx.Value(ctxKey{}):
		default:
		}
		return nil
	})
	c, err := consumer.New(h, testOpts(cluster, "g")...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "trace-7"))
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case v := <-got:
		if v != "trace-7" {
			t.Errorf("handler context value = %v, want Run's trace-7", v)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("record not handled")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestOnStopSeesAFailedStart(t *testing.T) {
	var stopped error
	var starts int
	c, err := consumer.New(nop, consumer.Topics("t"), consumer.SeedBrokers("127.0.0.1:1"), consumer.With(
		consumer.PluginFunc(func(a *consumer.Attachment) error {
			a.OnStart(func(context.Context, *kgo.Client) error { starts++; return errors.New("store unreachable") })
			a.OnStop(func(err error) { stopped = err })
			return nil
		}),
	))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "store unreachable") {
		t.Fatalf("Run = %v, want the start hook's error", err)
	}
	if stopped != err || starts != 1 {
		t.Errorf("OnStop saw %v after %d starts, want Run's error after 1", stopped, starts)
	}
	select {
	case <-c.Running():
	default:
		t.Error("Running not closed after Run failed to start")
	}
}
