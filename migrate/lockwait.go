package migrate

import (
	"fmt"
	"time"
)

// lockWait remembers, while step 2 waits, who held the lock, for the
// "Waited ..." line once it is taken.
type lockWait struct {
	start  time.Time // acquire began
	busy   bool      // the lock was held by another at least once
	holder string    // "<host> (pid <pid>)", or the session when .status does not name it
}

// saw records the holder that state names.
func (w *lockWait) saw(st *State) {
	w.busy = true
	switch s := st.Status; {
	case s != nil && s.Session == st.LockSession && st.LockSession != "":
		w.holder = fmt.Sprintf("%s (pid %d)", s.Host, s.PID)
	case st.LockSession != "":
		w.holder = "session " + st.LockSession
	}
}

// who is the last holder seen.
func (w *lockWait) who() string {
	if w.holder == "" {
		return "another process"
	}
	return w.holder
}
