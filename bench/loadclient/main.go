// Command loadclient is the benchmark's load: a paced record source for kcat
// and a client holding many SSE connections. Standard library only; built by
// `python -m bench` with `go build`.
//
//	loadclient produce -rate R -seconds T -bytes B   lines for `kcat -P`, each with its send time
//	loadclient stream -addr HOST:PORT -path /sse/T -n N ...   N streams; a JSON report line every interval
//
// A record's value is {"t":<send time, Unix ns>,"p":"<padding>"}: a stream
// reads latency as receive time minus t. Streams count events by their
// "\ndata: " lines (every value is one line), measure latency on every
// -sample'th connection, and with -check verify every id: an event id is a
// cursor of next offsets per partition (readable or compact, see cursorSum),
// so the sum of its offsets grows by exactly one per record; less is a
// duplicate, more is a loss.
//
// On SIGUSR1 every stream closes and reconnects at once with its last id as
// Last-Event-ID (a reconnect storm); SIGTERM or -seconds ends the run.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadclient produce|stream [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "produce":
		produce(os.Args[2:])
	case "stream":
		stream(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// produce writes rate lines a second for seconds, paced every millisecond.
func produce(args []string) {
	flags := flag.NewFlagSet("produce", flag.ExitOnError)
	rate := flags.Float64("rate", 1000, "records per second")
	seconds := flags.Float64("seconds", 10, "how long")
	size := flags.Int("bytes", 100, "bytes per value")
	flags.Parse(args)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	padding := bytes.Repeat([]byte("x"), max(0, *size-len(`{"t":1700000000000000000,"p":""}`)))
	start := time.Now()
	limit := int64(*rate * *seconds)
	var sent int64
	line := make([]byte, 0, len(padding)+64)
	for sent < limit {
		elapsed := time.Since(start).Seconds()
		due := min(limit, int64(*rate*elapsed)) - sent
		now := time.Now().UnixNano()
		for ; due > 0; due-- {
			line = append(line[:0], `{"t":`...)
			line = strconv.AppendInt(line, now, 10)
			line = append(line, `,"p":"`...)
			line = append(line, padding...)
			line = append(line, "\"}\n"...)
			out.Write(line)
			sent++
		}
		if err := out.Flush(); err != nil {
			fmt.Fprintln(os.Stderr, "produce:", err)
			os.Exit(1)
		}
		time.Sleep(time.Millisecond)
	}
}

// Latency histogram: bucket i holds latencies around exp(i/20) µs (5 % wide).
const bucketsPerE = 20

func bucket(latency time.Duration) int {
	us := float64(latency.Microseconds())
	if us < 1 {
		return 0
	}
	return int(math.Log(us) * bucketsPerE)
}

type counters struct {
	connected, events, heartbeats, bytes, reads, errors, duplicates, lost, resumed atomic.Int64
	allResumedAt                                                                   atomic.Int64 // Unix ns
	streams                                                                        int64
	mu                                                                             sync.Mutex
	latency                                                                        map[int]int64
}

func (c *counters) addLatencies(buckets map[int]int64) {
	c.mu.Lock()
	for b, n := range buckets {
		c.latency[b] += n
	}
	c.mu.Unlock()
}

type config struct {
	addr, path, lastID string
	sample, bufSize    int
	check              bool
	target             int64
	locals             []*net.TCPAddr
}

// conn is one SSE stream, reconnected with its last id on a storm.
type conn struct {
	cfg      *config
	index    int
	c        *counters
	lastID   string
	lastSum  int64 // sum of lastID's numbers; -1 before the first event
	events   int64
	storm    atomic.Bool // set on SIGUSR1 before the connection is closed
	resuming bool        // reconnected after a storm: the next event counts as resumed
	current  net.Conn
	mu       sync.Mutex
}

func (s *conn) run(done <-chan struct{}, finished chan<- int) {
	for {
		err := s.once()
		select {
		case <-done:
			return
		default:
		}
		if s.cfg.target > 0 && s.events >= s.cfg.target {
			finished <- s.index
			return
		}
		if s.storm.Swap(false) {
			s.resuming = true
		} else if err != nil {
			s.c.errors.Add(1)
			time.Sleep(100 * time.Millisecond) // a refused or dropped stream: retry, as a browser would
		}
	}
}

func (s *conn) close() {
	s.mu.Lock()
	if s.current != nil {
		s.current.Close()
	}
	s.mu.Unlock()
}

func (s *conn) once() error {
	dialer := net.Dialer{Timeout: 10 * time.Second, LocalAddr: s.cfg.locals[s.index%len(s.cfg.locals)]}
	nc, err := dialer.Dial("tcp", s.cfg.addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.current = nc
	s.mu.Unlock()
	defer nc.Close()
	request := "GET " + s.cfg.path + " HTTP/1.1\r\nHost: " + s.cfg.addr + "\r\nAccept: text/event-stream\r\n"
	if s.lastID != "" {
		request += "Last-Event-ID: " + s.lastID + "\r\n"
	}
	if _, err := nc.Write([]byte(request + "\r\n")); err != nil {
		return err
	}
	response, err := http.ReadResponse(bufio.NewReaderSize(nc, 4096), nil)
	if err != nil {
		return err
	}
	// No response.Body.Close: on an unfinished body it reads to the end, which an
	// event stream never reaches; closing the connection (deferred above) ends it.
	if response.StatusCode != 200 {
		return fmt.Errorf("status %d", response.StatusCode)
	}
	s.c.connected.Add(1)
	defer s.c.connected.Add(-1)
	buf := make([]byte, s.cfg.bufSize)
	filled := 0
	for {
		if filled == len(buf) { // one frame larger than the buffer
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, err := response.Body.Read(buf[filled:])
		if n > 0 {
			s.c.reads.Add(1) // the cadence at which the server's writes arrive
			s.c.bytes.Add(int64(n))
			filled += n
			end := bytes.LastIndex(buf[:filled], []byte("\n\n"))
			if end >= 0 {
				s.frames(buf[:end+2])
				filled = copy(buf, buf[end+2:filled])
				if s.cfg.target > 0 && s.events >= s.cfg.target {
					return nil
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// frames reads whole frames: events, heartbeats, latencies and ids.
func (s *conn) frames(data []byte) {
	events := int64(bytes.Count(data, []byte("\ndata: ")))
	if bytes.HasPrefix(data, []byte("data: ")) {
		events++
	}
	s.c.heartbeats.Add(int64(bytes.Count(data, []byte("\n\n:\n\n"))))
	if bytes.HasPrefix(data, []byte(":\n\n")) {
		s.c.heartbeats.Add(1)
	}
	if events == 0 {
		return
	}
	s.events += events
	s.c.events.Add(events)
	if s.index%s.cfg.sample == 0 {
		s.latencies(data)
	}
	if s.cfg.check {
		s.ids(data)
	}
}

func (s *conn) latencies(data []byte) {
	now := time.Now().UnixNano()
	buckets := map[int]int64{}
	for pos := 0; ; {
		i := bytes.Index(data[pos:], []byte(`{"t":`))
		if i < 0 {
			break
		}
		pos += i + 5
		end := pos
		for end < len(data) && data[end] >= '0' && data[end] <= '9' {
			end++
		}
		if sent, err := strconv.ParseInt(string(data[pos:end]), 10, 64); err == nil {
			buckets[bucket(time.Duration(now-sent))]++
		}
	}
	s.c.addLatencies(buckets)
}

func (s *conn) ids(data []byte) {
	for pos := 0; ; {
		i := bytes.Index(data[pos:], []byte("id: "))
		if i < 0 {
			return
		}
		if pos+i > 0 && data[pos+i-1] != '\n' {
			pos += i + 4
			continue
		}
		start := pos + i + 4
		end := start + bytes.IndexByte(data[start:], '\n')
		sum := cursorSum(data[start:end])
		if s.lastSum >= 0 {
			switch {
			case sum <= s.lastSum:
				s.c.duplicates.Add(1)
			case sum > s.lastSum+1:
				s.c.lost.Add(sum - s.lastSum - 1)
			}
		}
		if s.resuming {
			s.resuming = false
			if s.c.resumed.Add(1) == s.c.streams {
				s.c.allResumedAt.Store(time.Now().UnixNano())
			}
		}
		s.lastSum = sum
		s.lastID = string(data[start:end])
		pos = end
	}
}

// cursorSum is the sum of an id's offsets, over every topic of the stream
// (joined by '~'), each topic's cursor in either form (docs/resume.md):
// readable, offsets joined by '.', or compact, '-', a width digit, a base,
// '.', then per partition that many base64url digits of offset minus base.
// A topic's tag ('@' and 4 characters) is not an offset.
func cursorSum(id []byte) int64 {
	var sum int64
	for _, cursor := range bytes.Split(id, []byte("~")) {
		if at := bytes.IndexByte(cursor, '@'); at >= 0 {
			cursor = cursor[:at]
		}
		if len(cursor) < 2 || cursor[0] != '-' {
			for _, part := range bytes.Split(cursor, []byte(".")) {
				n, _ := strconv.ParseInt(string(part), 10, 64)
				sum += n
			}
			continue
		}
		width := int(cursor[1] - '0')
		head, fields, _ := bytes.Cut(cursor[2:], []byte("."))
		base, _ := strconv.ParseInt(string(head), 10, 64)
		for i := 0; width > 0 && i+width <= len(fields); i += width {
			var diff int64
			for _, digit := range fields[i : i+width] {
				diff = diff*64 + int64(bytes.IndexByte(base64url, digit))
			}
			sum += base + diff
		}
	}
	return sum
}

var base64url = []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

type report struct {
	Time       float64          `json:"time"`
	Connected  int64            `json:"connected"`
	Events     int64            `json:"events"`
	Heartbeats int64            `json:"heartbeats"`
	Bytes      int64            `json:"bytes"`
	Reads      int64            `json:"reads"` // reads that returned data, all streams
	Errors     int64            `json:"errors"`
	Duplicates int64            `json:"duplicates"`
	Lost       int64            `json:"lost"`
	Resumed    int64            `json:"resumed"`
	Finished   int              `json:"finished"`
	ResumedAll float64          `json:"all_resumed_at"`  // Unix seconds, 0 until every stream resumed
	Latency    map[string]int64 `json:"latency_buckets"` // since the previous report
	Note       string           `json:"note,omitempty"`
}

func stream(args []string) {
	flags := flag.NewFlagSet("stream", flag.ExitOnError)
	cfg := config{}
	flags.StringVar(&cfg.addr, "addr", "127.0.0.1:8000", "bridge address")
	flags.StringVar(&cfg.path, "path", "/sse/bench", "stream path")
	flags.StringVar(&cfg.lastID, "last-event-id", "", "start every stream after this id")
	n := flags.Int("n", 1000, "connections")
	flags.IntVar(&cfg.sample, "sample", 10, "measure latency on every sample'th connection")
	flags.IntVar(&cfg.bufSize, "buffer", 64*1024, "read buffer per connection, bytes")
	flags.BoolVar(&cfg.check, "check", false, "check every id: no record lost or duplicated")
	flags.Int64Var(&cfg.target, "target", 0, "end a stream after this many events (0: never)")
	seconds := flags.Float64("seconds", 60, "longest run")
	interval := flags.Float64("interval", 0.5, "seconds between reports")
	sources := flags.Int("sources", 8, "local addresses 127.0.0.1.. to connect from (ports per address run out)")
	flags.Parse(args)
	for i := 1; i <= *sources; i++ {
		cfg.locals = append(cfg.locals, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i))})
	}
	c := &counters{latency: map[int]int64{}, streams: int64(*n)}
	done := make(chan struct{})
	finished := make(chan int, *n)
	streams := make([]*conn, *n)
	for i := range streams {
		streams[i] = &conn{cfg: &cfg, index: i, c: c, lastID: cfg.lastID, lastSum: -1}
		go streams[i].run(done, finished)
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	ticker := time.NewTicker(time.Duration(*interval * float64(time.Second)))
	deadline := time.After(time.Duration(*seconds * float64(time.Second)))
	encoder := json.NewEncoder(os.Stdout)
	count := 0
	emit := func(note string) {
		c.mu.Lock()
		latency := make(map[string]int64, len(c.latency))
		for b, k := range c.latency {
			latency[strconv.Itoa(b)] = k
		}
		c.latency = map[int]int64{}
		c.mu.Unlock()
		encoder.Encode(report{
			Time: float64(time.Now().UnixNano()) / 1e9, Connected: c.connected.Load(), Events: c.events.Load(),
			Heartbeats: c.heartbeats.Load(), Bytes: c.bytes.Load(), Reads: c.reads.Load(), Errors: c.errors.Load(),
			Duplicates: c.duplicates.Load(), Lost: c.lost.Load(), Resumed: c.resumed.Load(),
			Finished: count, ResumedAll: float64(c.allResumedAt.Load()) / 1e9, Latency: latency, Note: note,
		})
	}
	for {
		select {
		case <-finished:
			count++
			if count == *n {
				emit("finished")
				return
			}
		case <-ticker.C:
			emit("")
		case sig := <-signals:
			if sig != syscall.SIGUSR1 {
				close(done)
				emit("stopped")
				return
			}
			c.resumed.Store(0)
			c.allResumedAt.Store(0)
			emit("storm")
			for _, s := range streams {
				s.storm.Store(true)
				s.close()
			}
		case <-deadline:
			close(done)
			emit("deadline")
			return
		}
	}
}
