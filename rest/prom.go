package rest

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/metrics"
)

// collector exports the registered jobs' metrics to Prometheus, read at
// every scrape. Counters of subtasks start from zero with every attempt
// of a job (Prometheus reads that as a counter reset).
type collector struct {
	s   *Server
	reg *prometheus.Registry

	recordsIn, recordsOut, bytesIn, bytesOut    *prometheus.Desc
	busy, idle, backPressured                   *prometheus.Desc
	inWM, outWM                                 *prometheus.Desc
	restarts, checkpoints, inProgress, lastDone *prometheus.Desc
	lastAge, jobUptime                          *prometheus.Desc

	mu struct {
		sync.Mutex
		hists map[*jobEntry]*jobHistograms
	}
}

// jobHistograms are the checkpoint histograms of a job, fed with the
// checkpoints finished since the last scrape.
type jobHistograms struct {
	duration, size prometheus.Histogram
	seen           int // checkpoints finished and observed so far
}

var taskLabels = []string{"job", "vertex", "subtask"}

func newCollector(s *Server) *collector {
	c := &collector{s: s, reg: prometheus.NewRegistry()}
	c.mu.hists = map[*jobEntry]*jobHistograms{}
	d := prometheus.NewDesc
	c.recordsIn = d("weir_task_records_in_total", "Records the subtask read from its input channels.", taskLabels, nil)
	c.recordsOut = d("weir_task_records_out_total", "Records the subtask wrote to its output channels.", taskLabels, nil)
	c.bytesIn = d("weir_task_bytes_in_total", "Bytes the subtask received on remote channels.", taskLabels, nil)
	c.bytesOut = d("weir_task_bytes_out_total", "Bytes the subtask sent on remote channels.", taskLabels, nil)
	c.busy = d("weir_task_busy_seconds_total", "Time the subtask spent working (neither idle nor backpressured).", taskLabels, nil)
	c.idle = d("weir_task_idle_seconds_total", "Time the subtask waited for input.", taskLabels, nil)
	c.backPressured = d("weir_task_backpressured_seconds_total", "Time the subtask waited for credit to send (backpressure).", taskLabels, nil)
	c.inWM = d("weir_task_input_watermark_milliseconds", "The subtask's current input watermark (event time, Unix ms).", taskLabels, nil)
	c.outWM = d("weir_task_output_watermark_milliseconds", "The watermark the subtask sent last (event time, Unix ms).", taskLabels, nil)
	c.restarts = d("weir_job_restarts_total", "Failovers of the job.", []string{"job"}, nil)
	c.checkpoints = d("weir_checkpoints_total", "Finished checkpoints and savepoints by result (completed, failed).", []string{"job", "result"}, nil)
	c.inProgress = d("weir_checkpoints_in_progress", "Checkpoints triggered and not finished.", []string{"job"}, nil)
	c.lastDone = d("weir_checkpoint_last_completed_timestamp_seconds", "When the newest completed checkpoint finished (Unix seconds).", []string{"job"}, nil)
	c.lastAge = d("weir_checkpoint_last_completed_age_seconds", "Seconds since the newest completed checkpoint finished.", []string{"job"}, nil)
	c.jobUptime = d("weir_job_uptime_seconds", "Seconds since the job started.", []string{"job"}, nil)
	c.reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return c
}

func (c *collector) handler() http.Handler {
	return promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{ErrorLog: nil})
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.recordsIn, c.recordsOut, c.bytesIn, c.bytesOut, c.busy, c.idle, c.backPressured,
		c.inWM, c.outWM, c.restarts, c.checkpoints, c.inProgress, c.lastDone, c.lastAge, c.jobUptime} {
		ch <- d
	}
	// The histograms carry a job label per job: described at collection
	// time only (an unchecked part of the collector).
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, e := range c.s.jobs() {
		j := e.job
		g := j.Graph()
		name := g.Name
		names := map[int]string{}
		for _, v := range g.Vertices {
			names[v.ID] = v.Name
		}
		for _, smp := range j.TaskMetrics(now) {
			lv := []string{name, names[smp.Vertex], strconv.Itoa(smp.Subtask)}
			counter := func(d *prometheus.Desc, v float64) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
			}
			counter(c.recordsIn, float64(smp.RecordsIn))
			counter(c.recordsOut, float64(smp.RecordsOut))
			counter(c.bytesIn, float64(smp.BytesIn))
			counter(c.bytesOut, float64(smp.BytesOut))
			counter(c.busy, float64(smp.BusyNanos)/1e9)
			counter(c.idle, float64(smp.IdleNanos)/1e9)
			counter(c.backPressured, float64(smp.BackPressuredNanos)/1e9)
			if smp.InputWatermark != metrics.NoWatermark {
				ch <- prometheus.MustNewConstMetric(c.inWM, prometheus.GaugeValue, float64(smp.InputWatermark), lv...)
			}
			if smp.OutputWatermark != metrics.NoWatermark {
				ch <- prometheus.MustNewConstMetric(c.outWM, prometheus.GaugeValue, float64(smp.OutputWatermark), lv...)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(j.Restarts()), name)
		ch <- prometheus.MustNewConstMetric(c.jobUptime, prometheus.GaugeValue, elapsed(j, now).Seconds(), name)
		if !j.Config().Checkpointing {
			continue
		}
		counts := j.CheckpointCounts()
		ch <- prometheus.MustNewConstMetric(c.checkpoints, prometheus.CounterValue, float64(counts.Completed), name, "completed")
		ch <- prometheus.MustNewConstMetric(c.checkpoints, prometheus.CounterValue, float64(counts.Failed), name, "failed")
		ch <- prometheus.MustNewConstMetric(c.inProgress, prometheus.GaugeValue, float64(max(counts.Triggered-counts.Completed-counts.Failed, 0)), name)
		stats := j.Checkpoints()
		for i := len(stats) - 1; i >= 0; i-- {
			if st := stats[i]; st.Completed && st.Kind == checkpoint.KindCheckpoint {
				ch <- prometheus.MustNewConstMetric(c.lastDone, prometheus.GaugeValue, float64(st.FinishedAt.UnixMilli())/1e3, name)
				ch <- prometheus.MustNewConstMetric(c.lastAge, prometheus.GaugeValue, now.Sub(st.FinishedAt).Seconds(), name)
				break
			}
		}
		h := c.histograms(e)
		c.mu.Lock()
		total := counts.Completed + counts.Failed
		fresh := min(total-h.seen, len(stats))
		for _, st := range stats[len(stats)-fresh:] {
			if st.Completed {
				h.duration.Observe(st.FinishedAt.Sub(st.TriggeredAt).Seconds())
				h.size.Observe(float64(st.StateSize))
			}
		}
		h.seen = total
		c.mu.Unlock()
		h.duration.Collect(ch)
		h.size.Collect(ch)
	}
}

func (c *collector) histograms(e *jobEntry) *jobHistograms {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.mu.hists[e]
	if h == nil {
		labels := prometheus.Labels{"job": e.job.Graph().Name}
		h = &jobHistograms{
			duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weir_checkpoint_duration_seconds",
				Help: "End-to-end duration of completed checkpoints and savepoints, from trigger to the last acknowledgement.", ConstLabels: labels,
				Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}),
			size: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weir_checkpoint_size_bytes",
				Help: "State size of completed checkpoints and savepoints.", ConstLabels: labels,
				Buckets: prometheus.ExponentialBuckets(1024, 4, 12)}),
		}
		c.mu.hists[e] = h
	}
	return h
}
