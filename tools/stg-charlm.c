/*
 * stg-charlm: a character (byte) language model on real English text, the
 * fortunes of Debian's 'fortunes' package, trained with stgrad.
 *
 *   stg-charlm [options]                     train (and validate every epoch)
 *   stg-charlm --sample FILE [options]       write text from a checkpoint
 *
 * Data: every file of --data DIR (default /usr/share/games/fortunes) but
 * the *.dat indexes and the *.u8 links, in name order, concatenated as
 * bytes.  The first 90% train, the last 10% validate: a fixed split.
 *
 * Model: bytes (256 symbols) -> embedding E -> LSTM H -> linear -> softmax
 * cross-entropy against the next byte, at every one of T steps of a window.
 * Training runs B streams side by side (the training text cut into B equal
 * parts), a window of T bytes of each per step, with truncated
 * backpropagation through time: the LSTM's final state of one window is the
 * initial state of the next (no gradient flows between windows), and the
 * state starts at zero each epoch.  Adam with a cosine schedule to 0 and
 * gradient-norm clipping.  Validation runs the same way over the validation
 * text with an inference plan that reads the training plan's parameters, and
 * reports bits per character: the mean cross-entropy over every predicted
 * byte, divided by ln 2.
 *
 * Parameters are named as in PyTorch's state_dict of the same model
 * (embed.weight, lstm.weight_ih_l0, ..., fc.weight (256, H), fc.bias).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>

#include "cli.h"
#include "stgrad.h"

#define PROG "stg-charlm"
#define DEFAULT_DATA "/usr/share/games/fortunes"
enum { VOCAB = 256, MAX_FILES = 4096 };

static const char usage_text[] =
    "usage: " PROG " [options]\n"
    "Trains a byte-level LSTM language model on the fortunes text with stgrad,\n"
    "or with --sample writes text from a checkpoint.\n"
    "\n"
    "  --data DIR          text files (default " DEFAULT_DATA "; *.dat and *.u8\n"
    "                      skipped); first 90% train, last 10% validation\n"
    "  --epochs N          epochs (default 5)\n"
    "  --batch B           streams trained side by side (default 32)\n"
    "  --steps T           window length, steps of backpropagation (default 64)\n"
    "  --embed E           embedding size (default 64)\n"
    "  --hidden H          LSTM state size (default 256)\n"
    "  --lr LR             Adam learning rate (default 0.002), cosine to 0\n"
    "  --clip-norm C       clip the gradient norm to C (default 1; 0: off)\n"
    "  --threads N         threads (default 2)\n"
    "  --seed S            seed of the initialisation (default 1)\n"
    "  --save FILE         save a checkpoint after every epoch\n"
    "  --resume FILE       continue from a checkpoint (same options)\n"
    "  --stop-after E      stop after epoch E (the schedule still spans --epochs)\n"
    "  --csv FILE          also write epoch,train_bpc,val_bpc,seconds,steps_per_s\n"
    "  --sample FILE       write --length bytes from the checkpoint FILE\n"
    "  --length N          bytes to sample (default 400)\n"
    "  --temperature X     divide the logits by X before sampling (default 0.8)\n"
    "  --prime TEXT        text to feed first (default a newline)\n"
    "  --help              this text\n"
    "\n"
    "After each epoch: epoch E/N  train_bpc X  val_bpc Y  seconds S (steps/s R),\n"
    "seconds timing the training steps only.  Exit status 1 on data, checkpoint or\n"
    "training errors, 2 on usage errors.\n";

typedef struct options {
    const char *data, *save, *resume, *csv, *sample, *prime;
    long epochs, batch, steps, embed, hidden, threads, stop_after, length;
    double lr, clip, temperature;
    uint64_t seed;
} options;

__attribute__((format(printf, 2, 3))) _Noreturn static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

static double parse_real(const char *opt, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !(x >= lo && x <= hi))
        die(2, "%s: '%s' is not a number from %g to %g", opt, v, lo, hi);
    return x;
}

static void parse(int argc, char **argv, options *o)
{
    *o = (options){.data = DEFAULT_DATA, .prime = "\n", .epochs = 5, .batch = 32, .steps = 64,
                   .embed = 64, .hidden = 256, .threads = 2, .length = 400, .lr = 2e-3,
                   .clip = 1.0, .temperature = 0.8, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2))
            die(2, "unexpected argument '%s' (try --help)", a);
        if (i + 1 >= argc)
            die(2, "%s needs a value (try --help)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--data"))
            o->data = v;
        else if (!strcmp(a, "--epochs"))
            o->epochs = cli_number(PROG, a, v, 1, 100000);
        else if (!strcmp(a, "--batch"))
            o->batch = cli_number(PROG, a, v, 1, 4096);
        else if (!strcmp(a, "--steps"))
            o->steps = cli_number(PROG, a, v, 1, 4096);
        else if (!strcmp(a, "--embed"))
            o->embed = cli_number(PROG, a, v, 1, 4096);
        else if (!strcmp(a, "--hidden"))
            o->hidden = cli_number(PROG, a, v, 1, 8192);
        else if (!strcmp(a, "--threads"))
            o->threads = cli_number(PROG, a, v, 1, 1024);
        else if (!strcmp(a, "--stop-after"))
            o->stop_after = cli_number(PROG, a, v, 1, 100000);
        else if (!strcmp(a, "--length"))
            o->length = cli_number(PROG, a, v, 0, 1L << 30);
        else if (!strcmp(a, "--seed"))
            o->seed = (uint64_t)cli_number(PROG, a, v, 0, 0x7fffffffL);
        else if (!strcmp(a, "--lr"))
            o->lr = parse_real(a, v, 1e-9, 10.0);
        else if (!strcmp(a, "--clip-norm"))
            o->clip = parse_real(a, v, 0.0, 1e9);
        else if (!strcmp(a, "--temperature"))
            o->temperature = parse_real(a, v, 1e-3, 100.0);
        else if (!strcmp(a, "--save"))
            o->save = v;
        else if (!strcmp(a, "--resume"))
            o->resume = v;
        else if (!strcmp(a, "--csv"))
            o->csv = v;
        else if (!strcmp(a, "--sample"))
            o->sample = v;
        else if (!strcmp(a, "--prime"))
            o->prime = v;
        else
            die(2, "unknown option '%s' (try --help)", a);
    }
    if (o->stop_after > o->epochs)
        die(2, "--stop-after: %ld is more than --epochs %ld", o->stop_after, o->epochs);
    if (!*o->prime)
        die(2, "--prime: the text must not be empty");
    if (o->sample && (o->save || o->resume || o->csv))
        die(2, "--sample cannot be combined with --save, --resume or --csv");
}

/* ---- the text ---------------------------------------------------------------- */

typedef struct text {
    unsigned char *b;
    size_t n;
} text;

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool skipped(const char *name)
{
    size_t n = strlen(name);
    return name[0] == '.' || (n > 4 && !strcmp(name + n - 4, ".dat")) ||
           (n > 3 && !strcmp(name + n - 3, ".u8"));
}

/* Every regular file of 'dir' but the skipped ones, in name order. */
static text read_text(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        die(1, "%s: %s", dir, strerror(errno));
    char *names[MAX_FILES];
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (skipped(e->d_name))
            continue;
        if (n == MAX_FILES)
            die(1, "%s: more than %d files", dir, MAX_FILES);
        if (!(names[n++] = strdup(e->d_name)))
            die(1, "out of memory");
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    text t = {NULL, 0};
    size_t cap = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(names[i]);
            continue;
        }
        FILE *f = fopen(path, "rb");
        if (!f)
            die(1, "%s: %s", path, strerror(errno));
        for (;;) {
            if (t.n == cap) {
                cap = cap ? 2 * cap : 1 << 20;
                unsigned char *nb = realloc(t.b, cap);
                if (!nb)
                    die(1, "out of memory reading %s", path);
                t.b = nb;
            }
            size_t got = fread(t.b + t.n, 1, cap - t.n, f);
            t.n += got;
            if (got == 0)
                break;
        }
        if (ferror(f))
            die(1, "%s: read error", path);
        fclose(f);
        free(names[i]);
    }
    return t;
}

/* ---- the model ------------------------------------------------------------------ */

typedef struct model {
    stg_plan *plan;
    int64_t batch, steps;
    stg_tensor chars, next, h0, c0, hn, cn, loss, logits;
    stg_tensor emb, fc, fb;
    stg_rnn lstm;
} model;

/* The graph for B streams of T steps; a training plan (Adam, clipping) or
 * an inference plan that keeps the loss, the logits and the final state
 * and reads the parameters of 'share' (when not NULL). */
static void build(model *m, const options *o, int64_t batch, int64_t steps, bool train,
                  const stg_plan *share)
{
    memset(m, 0, sizeof *m);
    m->batch = batch;
    m->steps = steps;
    stg_graph *g = stg_graph_new();
    if (!g)
        die(1, "out of memory");
    int64_t H = o->hidden, E = o->embed, V = VOCAB;
    m->chars = stg_input_i32(g, "chars", 2, (int64_t[]){batch, steps});
    m->next = stg_input_i32(g, "next", 2, (int64_t[]){batch, steps});
    m->h0 = stg_input(g, "h0", 3, (int64_t[]){1, batch, H});
    m->c0 = stg_input(g, "c0", 3, (int64_t[]){1, batch, H});
    m->emb = stg_param(g, "embed.weight", 2, (int64_t[]){V, E});
    m->lstm = (stg_rnn){.mode = STG_LSTM, .input_size = E, .hidden_size = H, .batch_first = 1};
    stg_rnn_params(g, &m->lstm, "lstm");
    m->fc = stg_param(g, "fc.weight", 2, (int64_t[]){V, H});
    m->fb = stg_param(g, "fc.bias", 1, &V);
    stg_tensor x = stg_embedding(g, m->emb, m->chars, -1);
    stg_tensor out = stg_rnn_apply(g, &m->lstm, x, m->h0, m->c0, &m->hn, &m->cn);
    m->logits = stg_add(g, stg_matmul(g, out, stg_transpose(g, m->fc, (int[]){1, 0})), m->fb);
    m->loss = stg_softmax_cross_entropy(g, m->logits, m->next, STG_REDUCE_MEAN);
    stg_graph_keep(g, m->hn);
    stg_graph_keep(g, m->cn);
    if (!train) {
        stg_graph_keep(g, m->loss);
        stg_graph_keep(g, m->logits);
    }
    if (stg_graph_status(g) != STG_OK)
        die(1, "building the model: %s", stg_graph_message(g));
    stg_plan_options po;
    stg_plan_options_init(&po);
    po.threads = (int)o->threads;
    po.seed = o->seed;
    if (train) {
        po.optimizer = STG_OPTIM_ADAM;
        po.lr = (float)o->lr;
        po.clip_norm = (float)o->clip;
    } else {
        po.optimizer = STG_OPTIM_NONE;
        po.inference = 1;
        po.share_params = share;
    }
    stg_status s = stg_plan_create(g, train ? m->loss : (stg_tensor){-1}, &po, &m->plan);
    stg_graph_free(g);
    if (s != STG_OK)
        die(1, "creating the plan: %s: %s", stg_status_name(s), stg_plan_last_message());
}

/* PyTorch's initialisation of each layer: Embedding N(0, 1); LSTM and
 * Linear uniform in +-1/sqrt(H) (the Linear's Kaiming-uniform with a =
 * sqrt(5) is exactly that). */
static void init_params(model *m, const options *o)
{
    float bound = (float)(1.0 / sqrt((double)o->hidden));
    stg_tensor u[6] = {m->lstm.weight_ih[0], m->lstm.weight_hh[0], m->lstm.bias_ih[0],
                       m->lstm.bias_hh[0], m->fc, m->fb};
    stg_status s = stg_plan_init(m->plan, m->emb, STG_INIT_NORMAL, 0.0f, 1.0f, o->seed * 16 + 1);
    for (int k = 0; k < 6 && s == STG_OK; k++)
        s = stg_plan_init(m->plan, u[k], STG_INIT_UNIFORM, -bound, bound, o->seed * 16 + 2 + k);
    if (s != STG_OK)
        die(1, "initialising: %s", stg_status_message(s));
}

/* Zeroes the state carried between windows. */
static void reset_state(model *m)
{
    size_t bytes = sizeof(float) * (size_t)(m->batch * m->lstm.hidden_size);
    memset(stg_plan_data(m->plan, m->h0), 0, bytes);
    memset(stg_plan_data(m->plan, m->c0), 0, bytes);
}

/* The final state becomes the next window's initial state. */
static void carry_state(model *m)
{
    size_t n = (size_t)(m->batch * m->lstm.hidden_size);
    memcpy(stg_plan_data(m->plan, m->h0), stg_plan_data(m->plan, m->hn), n * sizeof(float));
    memcpy(stg_plan_data(m->plan, m->c0), stg_plan_data(m->plan, m->cn), n * sizeof(float));
}

/* Window w of each of the B streams of 'len' bytes that start every
 * 'stride' bytes at 'base': inputs and next bytes. */
static void load_window(model *m, const unsigned char *base, size_t stride, int64_t w)
{
    int32_t *x = stg_plan_data_i32(m->plan, m->chars), *y = stg_plan_data_i32(m->plan, m->next);
    for (int64_t b = 0; b < m->batch; b++) {
        const unsigned char *s = base + (size_t)b * stride + (size_t)(w * m->steps);
        for (int64_t t = 0; t < m->steps; t++) {
            x[b * m->steps + t] = s[t];
            y[b * m->steps + t] = s[t + 1];
        }
    }
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Bits per character of the model over 'v' (the validation text), run as B
 * streams of windows with the state carried. */
static double validate(model *ev, const unsigned char *v, size_t n)
{
    size_t stride = (n - 1) / (size_t)ev->batch; /* n is at least batch (steps + 1) + 1 */
    int64_t windows = (int64_t)((stride - 1) / (size_t)ev->steps);
    reset_state(ev);
    double sum = 0.0;
    for (int64_t w = 0; w < windows; w++) {
        load_window(ev, v, stride, w);
        stg_status s = stg_plan_forward(ev->plan);
        if (s != STG_OK)
            die(1, "validation: %s", stg_plan_message(ev->plan));
        float loss;
        stg_plan_get(ev->plan, ev->loss, &loss, 1);
        sum += loss;
        carry_state(ev);
    }
    return sum / (double)windows / log(2.0);
}

/* ---- sampling --------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One byte from softmax(logits / temperature), drawn with 'rng'. */
static int draw(const float *logits, double temperature, uint64_t *rng)
{
    double p[VOCAB], top = -INFINITY, sum = 0.0;
    for (int k = 0; k < VOCAB; k++)
        top = logits[k] / temperature > top ? logits[k] / temperature : top;
    for (int k = 0; k < VOCAB; k++)
        sum += p[k] = exp(logits[k] / temperature - top);
    double u = (double)(splitmix(rng) >> 11) / 9007199254740992.0 * sum;
    for (int k = 0; k < VOCAB; k++)
        if ((u -= p[k]) < 0.0)
            return k;
    return VOCAB - 1;
}

static int sample(const options *o)
{
    model m;
    build(&m, o, 1, 1, false, NULL);
    if (stg_plan_load(m.plan, o->sample) != STG_OK)
        die(1, "%s (were --embed and --hidden the ones it was trained with?)",
            stg_plan_message(m.plan));
    reset_state(&m);
    uint64_t rng = o->seed;
    int32_t *x = stg_plan_data_i32(m.plan, m.chars);
    stg_plan_data_i32(m.plan, m.next)[0] = 0;
    /* the prime, one byte at a time, then each drawn byte fed back */
    fputs(o->prime, stdout);
    const unsigned char *prime = (const unsigned char *)o->prime;
    size_t np = strlen(o->prime);
    int next = 0;
    for (size_t i = 0; i < np + (size_t)o->length; i++) {
        x[0] = i < np ? prime[i] : next;
        if (stg_plan_forward(m.plan) != STG_OK)
            die(1, "sampling: %s", stg_plan_message(m.plan));
        carry_state(&m);
        if (i + 1 < np)
            continue;
        next = draw(stg_plan_data(m.plan, m.logits), o->temperature, &rng);
        if (i + 1 < np + (size_t)o->length)
            putchar(next);
    }
    putchar('\n');
    stg_plan_free(m.plan);
    return 0;
}

/* ---- training --------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    options o;
    parse(argc, argv, &o);
    if (o.sample)
        return sample(&o);

    text t = read_text(o.data);
    size_t ntrain = t.n / 10 * 9, need = (size_t)o.batch * (size_t)(o.steps + 1) + 1;
    const unsigned char *train = t.b, *val = t.b + ntrain;
    size_t nval = t.n - ntrain;
    if (ntrain < need || nval < need)
        die(1, "%s: %zu bytes of text are too few for %ld streams of %ld steps (the training "
            "and the validation part each need %zu)", o.data, t.n, o.batch, o.steps, need);
    size_t stride = (ntrain - 1) / (size_t)o.batch;
    int64_t per_epoch = (int64_t)((stride - 1) / (size_t)o.steps);

    model m, ev;
    build(&m, &o, o.batch, o.steps, true, NULL);
    build(&ev, &o, o.batch, o.steps, false, m.plan);
    init_params(&m, &o);
    stg_schedule sched = {.kind = STG_SCHED_COSINE, .t_max = per_epoch * o.epochs};
    stg_plan_set_schedule(m.plan, &sched);
    if (o.resume && stg_plan_load(m.plan, o.resume) != STG_OK)
        die(1, "%s", stg_plan_message(m.plan));
    int64_t done = stg_plan_steps(m.plan);
    if (done % per_epoch)
        die(1, "%s: %lld steps is not a whole number of epochs of %lld steps (other --batch or "
            "--steps?)", o.resume, (long long)done, (long long)per_epoch);
    FILE *csv = NULL;
    if (o.csv) {
        if (!(csv = fopen(o.csv, "w")))
            die(1, "--csv: cannot create '%s': %s", o.csv, strerror(errno));
        fprintf(csv, "epoch,train_bpc,val_bpc,seconds,steps_per_s\n");
    }
    printf(PROG ": %zu bytes of text (%zu train, %zu validation), %ld streams x %ld steps "
           "(%lld steps/epoch), embed %ld, lstm %ld, adam lr %g cosine, clip %g, %ld threads\n",
           t.n, ntrain, nval, o.batch, o.steps, (long long)per_epoch, o.embed, o.hidden, o.lr,
           o.clip, o.threads);
    fflush(stdout);
    long last = o.stop_after ? o.stop_after : o.epochs;
    for (long e = done / per_epoch + 1; e <= last; e++) {
        reset_state(&m);
        double sum = 0.0, t0 = now_seconds();
        for (int64_t w = 0; w < per_epoch; w++) {
            load_window(&m, train, stride, w);
            stg_status s = stg_plan_step(m.plan);
            if (s != STG_OK)
                die(1, "epoch %ld, step %lld: %s", e, (long long)w, stg_plan_message(m.plan));
            sum += stg_plan_loss(m.plan);
            carry_state(&m);
        }
        double secs = now_seconds() - t0;
        double vbpc = validate(&ev, val, nval), tbpc = sum / (double)per_epoch / log(2.0);
        printf("epoch %ld/%ld  train_bpc %.4f  val_bpc %.4f  seconds %.2f (steps/s %.1f)\n", e,
               o.epochs, tbpc, vbpc, secs, (double)per_epoch / secs);
        fflush(stdout);
        if (csv) {
            fprintf(csv, "%ld,%.6f,%.6f,%.4f,%.3f\n", e, tbpc, vbpc, secs,
                    (double)per_epoch / secs);
            fflush(csv);
        }
        if (o.save && stg_plan_save(m.plan, o.save) != STG_OK)
            die(1, "%s", stg_plan_message(m.plan));
    }
    if (csv)
        fclose(csv);
    stg_plan_free(ev.plan);
    stg_plan_free(m.plan);
    free(t.b);
    return 0;
}
