package store

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
)

// natsLogger sends the embedded nats-server's log through slog (with
// NoLog its warnings and errors, such as a stream's critical write error,
// were lost). Notices are start-up chatter and go to debug.
type natsLogger struct{ log *slog.Logger }

var _ server.Logger = natsLogger{}

func (l natsLogger) emit(level slog.Level, format string, v []any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, "store: nats-server: "+fmt.Sprintf(format, v...))
}

func (l natsLogger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }
func (l natsLogger) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l natsLogger) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l natsLogger) Debugf(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
func (l natsLogger) Tracef(format string, v ...any)  { l.emit(slog.LevelDebug, format, v) }
