package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Opt configures a Consumer.
type Opt interface{ apply(*cfg) }

type opt func(*cfg)

func (o opt) apply(c *cfg) { o(c) }

// PartitionsFunc is called with the partitions of a rebalance event, by topic.
type PartitionsFunc func(ctx context.Context, partitions map[string][]int32)

type cfg struct {
	brokers    []string
	topics     []string
	group      string
	clientOpts []kgo.Opt

	commitInterval  time.Duration
	maxInFlight     int
	maxPerPartition int
	revokeTimeout   time.Duration
	shutdownTimeout time.Duration
	retryMin        time.Duration
	retryMax        time.Duration

	onAssigned PartitionsFunc
	onRevoked  PartitionsFunc
	onLost     PartitionsFunc

	ordering Ordering
	workers  int

	instanceID string
	serverSide bool

	logger     *slog.Logger
	middleware []Middleware
	plugins    []Plugin

	batch batchCfg

	errs []error
}

func defaultCfg() cfg {
	return cfg{
		commitInterval:  time.Second,
		maxInFlight:     10_000,
		maxPerPartition: 1_000,
		revokeTimeout:   30 * time.Second,
		shutdownTimeout: 30 * time.Second,
		retryMin:        100 * time.Millisecond,
		retryMax:        10 * time.Second,
		workers:         64,
		logger:          slog.Default(),
		batch:           batchCfg{maxRecords: defaultBatchMaxRecords, maxBytes: defaultBatchMaxBytes},
	}
}

// SeedBrokers sets the brokers to bootstrap from, as host:port. It is a
// shortcut for ClientOpts(kgo.SeedBrokers(...)); the default is
// 127.0.0.1:9092 (Java: bootstrap.servers).
func SeedBrokers(addrs ...string) Opt {
	return opt(func(c *cfg) { c.brokers = append(c.brokers, addrs...) })
}

// Topics sets the topics to consume. At least one is required.
func Topics(topics ...string) Opt {
	return opt(func(c *cfg) { c.topics = append(c.topics, topics...) })
}

// Group sets the consumer group. With a group, partitions are shared among
// the group's members and offsets are committed to it; without one, the
// Consumer reads every partition of its topics and commits nothing (Java:
// group.id).
func Group(id string) Opt {
	return opt(func(c *cfg) { c.group = id })
}

// Defaults of the client options the Consumer sets but lets ClientOpts
// override. The rebalance timeout is franz-go's: the poll loop never waits
// for a handler, so a rebalance waits at most for RevokeTimeout.
const (
	defaultSessionTimeout   = 45 * time.Second
	defaultRebalanceTimeout = time.Minute
	// A fetch of partitions that are all idle (a redrive topic, a
	// partition just assigned while the others are still being
	// positioned) holds the next fetch back this long; Java's default,
	// not kgo's 5 s.
	defaultFetchMaxWait = 500 * time.Millisecond
	// The heartbeat interval of a static member (InstanceID).
	staticHeartbeat = 500 * time.Millisecond
)

// InstanceID makes the Consumer a static member of its group (KIP-345;
// Java: group.instance.id): a member that restarts within its session
// timeout with the same ID gets its partitions back without a rebalance, and
// nobody else reads them meanwhile. Derive the ID from something stable
// across restarts and unique in the group: a StatefulSet's pod name, or the
// host name of a machine that runs one instance. A static member
// heartbeats every 500 ms unless ClientOpts says otherwise, so that a
// restart's rebalance, if the broker starts one, ends within a second
// (docs/BENCHMARKS.md, "Time to recover"). Raise the session timeout
// (kgo.SessionTimeout) above the time a restart takes; a static member that
// dies for good holds its partitions until then. A static member leaves no
// group on shutdown. Two processes with the same ID do not share: the one
// that joins later fences the other, whose partitions are lost (nothing is
// committed for them) until it stops. The default is a dynamic member.
func InstanceID(id string) Opt {
	return opt(func(c *cfg) {
		if id == "" {
			c.errs = append(c.errs, fmt.Errorf("%w: empty InstanceID", ErrInvalidOption))
		}
		c.instanceID = id
	})
}

// ServerSideBalancer opts into the next-generation consumer group protocol
// (KIP-848; Java: group.protocol=consumer): the broker assigns partitions
// and a rebalance no longer stops the whole group, each member reconciling
// its own assignment through heartbeats. It needs Kafka 4.0 or later (4.3
// or later is recommended, see kgo.ServerSideBalancer); against an older
// broker the client keeps the classic protocol. The Consumer balances with
// kgo.StickyBalancer, which the broker runs as its "uniform" assignor. The
// hooks, the commit on revoke, lost partitions and rejoins keep their
// meaning. The default is the classic protocol with cooperative-sticky
// balancing.
func ServerSideBalancer() Opt {
	return opt(func(c *cfg) { c.serverSide = true })
}

// ClientOpts passes options through to the underlying kgo.Client, for TLS,
// SASL, fetch sizes, balancers, timeouts and the like. They apply after the
// Consumer's defaults (session timeout 45 s, heartbeat 3 s, rebalance timeout
// 60 s, cooperative-sticky balancing, fetch max wait 500 ms), so they
// override them.
//
// The options the Consumer owns to keep its guarantees come after them and
// win: the topics and the group (use Topics and Group), the partition
// callbacks (use OnAssigned, OnRevoked, OnLost), committing (use
// CommitInterval), BlockRebalanceOnPoll and AdjustFetchOffsetsFn (a Plugin
// sets it through its Attachment). Options that would change what those
// mean, such as kgo.ConsumeRegex, ConsumePartitions, DisableAutoCommit,
// GreedyAutoCommit and ShareGroup, make Run fail with ErrInvalidOption.
func ClientOpts(opts ...kgo.Opt) Opt {
	return opt(func(c *cfg) { c.clientOpts = append(c.clientOpts, opts...) })
}

// minCommitInterval is the shortest autocommit interval kgo accepts.
const minCommitInterval = 100 * time.Millisecond

// CommitInterval sets how often stored offsets are committed in the
// background; the default is 1 s, the minimum 100 ms (Java:
// auto.commit.interval.ms). Offsets are also committed synchronously on
// revoke and once more on shutdown.
func CommitInterval(d time.Duration) Opt {
	return opt(func(c *cfg) { c.commitInterval = d })
}

// MaxInFlight bounds the records fetched but not yet handled, across all
// partitions; the default is 10,000. Polling stops while the bound is reached,
// so memory stays bounded however large the backlog is.
func MaxInFlight(n int) Opt {
	return opt(func(c *cfg) { c.maxInFlight = n })
}

// MaxInFlightPerPartition sets how many waiting records of one partition
// mean its handler is behind; the default is 1,000. A partition found at
// this bound by two checks in a row, 50 ms apart, is paused: it is not
// fetched until half of its records are handled, so a slow partition cannot
// take the whole MaxInFlight budget from the others. A handler that works
// off a large fetch between two checks is not paused.
func MaxInFlightPerPartition(n int) Opt {
	return opt(func(c *cfg) { c.maxPerPartition = n })
}

// RevokeTimeout bounds how long a revoke waits for the record in hand to
// finish; the default is 30 s. After it, the handler's context is
// cancelled and the record's offset is not stored. A lost partition does
// not wait: its handler's context is cancelled at once, and RevokeTimeout
// bounds how long the loss waits for the handler to return. Keep it below
// the rebalance timeout.
func RevokeTimeout(d time.Duration) Opt {
	return opt(func(c *cfg) { c.revokeTimeout = d })
}

// ShutdownTimeout bounds how long Run waits, once its context is done, for
// the records in hand to finish (and plugins' OnDrained hooks) before it
// cancels their context, commits and leaves the group; the default is 30 s.
// The last commit takes at most 5 s and the leave at most 4 s, so Run
// returns within ShutdownTimeout plus 9 s whatever the group is doing, even
// with a JoinGroup the broker never answers, plus what plugins' OnStop
// hooks take (a dlq.Router waits up to its WriteTimeout for dead letters
// that handlers abandoned at the drain deadline were still writing).
func ShutdownTimeout(d time.Duration) Opt {
	return opt(func(c *cfg) { c.shutdownTimeout = d })
}

// RetryBackoff sets the capped exponential backoff, with jitter, between
// calls of a handler that keeps failing on the same record; the defaults are
// 100 ms and 10 s.
func RetryBackoff(min, max time.Duration) Opt {
	return opt(func(c *cfg) { c.retryMin, c.retryMax = min, max })
}

// Ordering says which records of a partition may be handled at the same
// time.
type Ordering int

const (
	// PartitionOrder handles the records of a partition one at a time, in
	// offset order, on the partition's own goroutine. It is the default.
	PartitionOrder Ordering = iota
	// KeyOrder handles records with the same key one at a time, in offset
	// order, and records with different keys in parallel on a pool of
	// Workers goroutines shared by all partitions. Records without a key
	// have no order. A failing record holds back only its own key.
	KeyOrder
	// Unordered handles any records in parallel on the pool.
	Unordered
)

func (o Ordering) String() string {
	switch o {
	case PartitionOrder:
		return "partition"
	case KeyOrder:
		return "key"
	case Unordered:
		return "unordered"
	}
	return "unknown"
}

// Order sets which records may be handled at the same time; the default is
// PartitionOrder. With KeyOrder and Unordered, records finish out of offset
// order, and a partition's offset is stored only up to its first record not
// yet finished: after a crash, records finished beyond that point are
// handled again. Their number is bounded by MaxInFlightPerPartition plus one
// fetch.
func Order(o Ordering) Opt {
	return opt(func(c *cfg) { c.ordering = o })
}

// Workers sets how many handlers run at once with KeyOrder and Unordered;
// the default is 64. It has no effect with PartitionOrder, where each
// partition has one.
func Workers(n int) Opt {
	return opt(func(c *cfg) { c.workers = n })
}

// OnAssigned sets a function called after partitions are assigned to this
// member and before they are fetched.
func OnAssigned(fn PartitionsFunc) Opt {
	return opt(func(c *cfg) { c.onAssigned = fn })
}

// OnRevoked sets a function called after revoked partitions finished their
// record in hand and their offsets were committed.
func OnRevoked(fn PartitionsFunc) Opt {
	return opt(func(c *cfg) { c.onRevoked = fn })
}

// OnLost sets a function called after partitions were lost, for example on
// session expiry. Their offsets are not committed: another member may own
// them already. It is also called when the member comes back into the group
// under a new member ID still holding partitions (kgo keeps them across
// such a rejoin): they are reported lost, read again from the group's
// commits, and reported to OnAssigned.
func OnLost(fn PartitionsFunc) Opt {
	return opt(func(c *cfg) { c.onLost = fn })
}

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Opt {
	return opt(func(c *cfg) { c.logger = l })
}

// Use wraps the handler with middleware; the first is the outermost.
func Use(mw ...Middleware) Opt {
	return opt(func(c *cfg) { c.middleware = append(c.middleware, mw...) })
}

func (c *cfg) validate() error {
	errs := c.errs
	if len(c.topics) == 0 {
		errs = append(errs, fmt.Errorf("%w: no topics", ErrInvalidOption))
	}
	if c.commitInterval < minCommitInterval {
		errs = append(errs, fmt.Errorf("%w: CommitInterval %v is below %v", ErrInvalidOption, c.commitInterval, minCommitInterval))
	}
	if c.maxInFlight < 1 || c.maxPerPartition < 1 {
		errs = append(errs, fmt.Errorf("%w: in-flight limits must be at least 1", ErrInvalidOption))
	}
	if c.revokeTimeout <= 0 || c.shutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%w: timeouts must be positive", ErrInvalidOption))
	}
	if c.retryMin <= 0 || c.retryMax < c.retryMin {
		errs = append(errs, fmt.Errorf("%w: RetryBackoff(%v, %v) needs 0 < min <= max", ErrInvalidOption, c.retryMin, c.retryMax))
	}
	if c.ordering < PartitionOrder || c.ordering > Unordered {
		errs = append(errs, fmt.Errorf("%w: unknown ordering %d", ErrInvalidOption, c.ordering))
	}
	if c.workers < 1 {
		errs = append(errs, fmt.Errorf("%w: Workers(%d) must be at least 1", ErrInvalidOption, c.workers))
	}
	if c.logger == nil {
		errs = append(errs, fmt.Errorf("%w: nil logger", ErrInvalidOption))
	}
	if c.group == "" && (c.instanceID != "" || c.serverSide) {
		errs = append(errs, fmt.Errorf("%w: InstanceID and ServerSideBalancer need a Group", ErrInvalidOption))
	}
	return errors.Join(errs...)
}

// checkClient refuses a client whose options change what the options the
// Consumer owns mean; the Consumer's own come last and win over the others,
// and kgo.NewClient refuses most conflicts itself (DisableAutoCommit or
// GreedyAutoCommit with AutoCommitMarks, for example).
func checkClient(cl *kgo.Client) error {
	var refused []string
	if v, _ := cl.OptValue(kgo.ConsumeRegex).(bool); v {
		refused = append(refused, "ConsumeRegex")
	}
	if v, _ := cl.OptValue(kgo.ConsumePartitions).(map[string]map[int32]kgo.Offset); len(v) > 0 {
		refused = append(refused, "ConsumePartitions")
	}
	if v, _ := cl.OptValue(kgo.ShareGroup).(string); v != "" {
		refused = append(refused, "ShareGroup")
	}
	if len(refused) == 0 {
		return nil
	}
	return fmt.Errorf("%w: kgo.%s conflicts with the consumer's own options", ErrInvalidOption, strings.Join(refused, ", kgo."))
}
