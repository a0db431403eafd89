package core

import (
	"bytes"
	"os"
	"strconv"
)

// schedBatch is Linux's SCHED_BATCH policy number.
const schedBatch = 3

// threadPolicies counts this process's threads and those running under
// SCHED_BATCH, from /proc. resty.ffi gives the library's threads that
// policy (lua/resty/ffi.lua, enter_batch); stats() shows it took.
func threadPolicies() (threads, batch int) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, 0
	}
	for _, t := range tasks {
		stat, err := os.ReadFile("/proc/self/task/" + t.Name() + "/stat")
		if err != nil {
			continue // the thread has exited since the listing
		}
		threads++
		if policy, ok := statPolicy(stat); ok && policy == schedBatch {
			batch++
		}
	}
	return threads, batch
}

// statPolicy reads the policy field (the 41st) of a /proc stat line. The
// command name, field 2, is in parentheses and may hold spaces, so the
// fields are counted from the last ')'.
func statPolicy(stat []byte) (int, bool) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, false
	}
	fields := bytes.Fields(stat[end+1:])
	// fields[0] is field 3 (state), so field 41 is fields[38]
	if len(fields) < 39 {
		return 0, false
	}
	policy, err := strconv.Atoi(string(fields[38]))
	return policy, err == nil
}
