// Package notify speaks systemd's notify protocol (READY, STATUS,
// WATCHDOG, STOPPING). Without NOTIFY_SOCKET every call does nothing.
package notify

import (
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// Notifier sends notify messages to systemd.
type Notifier struct {
	lg       *zap.Logger
	watchdog time.Duration // WATCHDOG_USEC, 0 when systemd wants no pings

	mu         sync.Mutex
	lastStatus string
	warned     bool
}

// New reads NOTIFY_SOCKET and WATCHDOG_USEC from the environment.
func New(lg *zap.Logger) *Notifier {
	n := &Notifier{lg: lg}
	// SdWatchdogEnabled also checks WATCHDOG_PID, so a child that inherited
	// the variables does not ping on its parent's behalf.
	if d, err := daemon.SdWatchdogEnabled(false); err != nil {
		lg.Warn("ignoring malformed watchdog settings", zap.Error(err))
	} else {
		n.watchdog = d
	}
	return n
}

// WatchdogInterval is how often to ping: half of WATCHDOG_USEC, as
// sd_watchdog_enabled(3) advises, or 0 when no watchdog is set.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog / 2 }

// Ready tells systemd the service is up, with its first status line.
func (n *Notifier) Ready(status string) {
	n.mu.Lock()
	n.lastStatus = status
	n.mu.Unlock()
	n.send("READY=1\nSTATUS=" + status)
}

// Status sets the line `systemctl status` shows; repeats are not resent.
func (n *Notifier) Status(status string) {
	n.mu.Lock()
	same := status == n.lastStatus
	n.lastStatus = status
	n.mu.Unlock()
	if !same {
		n.send("STATUS=" + status)
	}
}

// Watchdog tells systemd the supervisor loop is alive.
func (n *Notifier) Watchdog() { n.send(daemon.SdNotifyWatchdog) }

// Stopping tells systemd shutdown has begun.
func (n *Notifier) Stopping(status string) { n.send("STOPPING=1\nSTATUS=" + status) }

func (n *Notifier) send(state string) {
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		// Warn once: a broken socket would otherwise log every second.
		n.mu.Lock()
		warned := n.warned
		n.warned = true
		n.mu.Unlock()
		if !warned {
			n.lg.Warn("cannot notify systemd", zap.Error(err))
		}
		return
	}
	if sent {
		n.lg.Debug("notified systemd", zap.String("state", state))
	}
}
