package svc

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"golang.org/x/sync/errgroup"
)

// Run runs the service's consumer (or other main loop) and its HTTP server
// on ln, unless ln is nil, until ctx is done or one of them fails; a
// failure stops the other.
func Run(ctx context.Context, logger *slog.Logger, web *HTTP, ln net.Listener, loop func(context.Context) error) error {
	g, ctx := errgroup.WithContext(ctx)
	if ln != nil {
		g.Go(func() error { return web.Serve(ctx, ln, logger) })
	}
	g.Go(func() error {
		err := loop(ctx)
		if err == nil && ctx.Err() == nil {
			err = errors.New("stopped unexpectedly")
		}
		return err
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		logger.Info("stopped")
	}
	return err
}
