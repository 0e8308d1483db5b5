// Package lag measures per-partition consumer lag in records and seconds,
// rates each partition's health over a sliding window, and exposes both as
// Prometheus metrics and /healthz and /readyz handlers.
//
// A Monitor observes a Consumer from the inside, so it knows what outside
// lag exporters can only estimate: the timestamp of every record it holds.
// Lag in seconds is the age of the oldest record received and not yet
// handled, 0 when none waits, never NaN; lag in records is the high
// watermark, taken from fetch responses, minus the committed offset.
//
//	reg := prometheus.NewRegistry()
//	monitor, err := lag.NewMonitor(lag.Registerer(reg))
//	if err != nil {
//		return err
//	}
//	c, err := consumer.New(handler,
//		consumer.Topics("sensor-data"),
//		consumer.Group("usage"),
//		consumer.With(strategy, router, monitor), // a recovery strategy, a *dlq.Router
//	)
//	if err != nil {
//		return err
//	}
//	go monitor.ListenAndServe(ctx, ":9090", reg) // /metrics, /healthz, /readyz
//	err = c.Run(ctx)
//
// The Monitor is a consumer.Plugin: attached to a Consumer with
// consumer.With, it learns the Consumer's group (which labels its metrics;
// GroupLabel names a Consumer without one), registers its metrics and
// installs its client hooks, exports the counters of a dead-letter router
// attached to the same Consumer, makes /readyz wait for the Consumer's
// readiness (Consumer.Ready: a recovery strategy once caught up), and fails
// /healthz and /readyz once Run returned. A Monitor observes one Consumer.
//
// While that router's circuit breaker is open or half-open, /readyz fails
// with the breaker's reason and /healthz does not: the failure is
// downstream, and a restart would not mend it. A record the breaker holds (fault.ErrHeld) is
// counted as a hold, not a handler error, and its partition as paused.
//
// Each partition gets a Status in the spirit of Burrow: OK, WARN (lag
// growing), REWIND (offset went back), ERR (fetch or commit failing), STALL
// (active but stuck on a record) or STOP (nothing moves while records
// wait); the group takes its worst partition's. docs/LAG.md gives the rules
// and where they differ from Burrow's.
//
// Metrics, each with a constant group label. Lag, with kafka-lag-exporter's
// names and labels so that its dashboards and alerts work:
//
//	kafka_consumergroup_group_offset{topic, partition}
//	kafka_consumergroup_group_lag{topic, partition}
//	kafka_consumergroup_group_lag_seconds{topic, partition}
//	kafka_consumergroup_group_max_lag
//	kafka_consumergroup_group_max_lag_seconds
//	kafka_consumergroup_group_sum_lag
//
// Partitions and status:
//
//	kconsumer_partition_high_watermark{topic, partition}
//	kconsumer_partition_log_start_offset{topic, partition}
//	kconsumer_partition_processed_offset{topic, partition}
//	kconsumer_partition_held_records{topic, partition}
//	kconsumer_partition_status{topic, partition}   0 OK … 5 STOP
//	kconsumer_group_status
//	kconsumer_assigned_partitions
//	kconsumer_paused_partitions                    by backpressure or the open breaker
//	kconsumer_in_flight_records, kconsumer_in_flight_records_peak, kconsumer_key_queue_max
//	kconsumer_healthy, kconsumer_ready, kconsumer_recovery_ready
//
// Handling and committing:
//
//	kconsumer_records_handled_total{topic}
//	kconsumer_handler_errors_total{topic, class}   poison, retriable, uncertain, unclassified
//	kconsumer_breaker_holds_total{topic}           records the open breaker held
//	kconsumer_handler_retries_total{topic}
//	kconsumer_handler_duration_seconds{topic}      histogram
//	kconsumer_batch_records                        histogram of batch sizes, for a consumer.NewBatch Consumer
//	kconsumer_rebalances_total{event}              assigned, revoked, lost
//	kconsumer_commits_total
//	kconsumer_commit_failures_total
//	kconsumer_commit_duration_seconds              histogram
//
// Dead letters, when a dead-letter router (a *dlq.Router) is attached to the
// same Consumer:
//
//	kconsumer_dlq_records_total{class}
//	kconsumer_dlq_write_failures_total
//	kconsumer_dlq_breaker_state                    0 closed, 1 open, 2 half-open
//	kconsumer_dlq_breaker_opens_total
//	kconsumer_dlq_breaker_held_partitions
//
// With a Registerer, franz-go's client metrics from plugin/kprom are
// registered too, as kconsumer_kgo_*, except kprom's two buffered-records
// gauges, whose _total suffix promtool check metrics refuses on a gauge;
// the Monitor exports them as
//
//	kconsumer_kgo_buffered_fetch_records
//	kconsumer_kgo_buffered_produce_records
//
// Every series passes promtool check metrics (a test checks it).
package lag
