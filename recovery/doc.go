// Package recovery holds the strategies that decide where a consumer starts
// after a restart, chosen by the kind of state its handler keeps: FullReplay
// for state that is overwritten (replaying is idempotent), CheckpointSkip for
// state that accumulates (resume after a checkpoint stored with the effect),
// and Stateless for handlers that keep none.
package recovery
