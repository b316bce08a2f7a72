/*
 * stg-train: trains an MLP classifier on Fashion-MNIST (or MNIST) with stgrad.
 *
 *   stg-train [options]
 *
 * Data: the four gzip'ed IDX files train-images-idx3-ubyte.gz,
 * train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
 * t10k-labels-idx1-ubyte.gz in --data DIR (default
 * /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist).  Pixels
 * are scaled to [0, 1].  The input size is the number of pixels per image and
 * the number of classes is --classes (default 10); a label outside it is an
 * error naming the file and the label's position.
 *
 * Model: x (B, in) -> [x W + b -> activation] per hidden layer -> x W + b ->
 * logits (B, classes); loss = softmax cross-entropy against the int32 labels,
 * mean over the batch.  Parameters are named fc1.weight, fc1.bias, fc2.weight,
 * ... (the names in checkpoints).  Weights W are (fan_in, fan_out) and are
 * initialised like PyTorch's nn.Linear: Kaiming-uniform with a = sqrt(5),
 * i.e. uniform in +-1/sqrt(fan_in), and biases uniform in +-1/sqrt(fan_in),
 * every tensor from its own seed derived from --seed.
 *
 * Options (a value may follow as the next argument or after '='):
 *   --data DIR            data directory
 *   --layers L            hidden sizes, comma-separated (default 512,256;
 *                         "" or "none" for none: a linear classifier)
 *   --batch-norm          batch norm after each convolution (lenet) or
 *                         hidden linear layer (mlp); named bn<k>.weight,
 *                         bn<k>.bias, bn<k>.running_mean, bn<k>.running_var
 *   --dropout P           dropout after each hidden activation
 *   --activation A        relu | tanh | sigmoid | gelu | leaky_relu (slope
 *                         0.01) | elu (alpha 1); default relu
 *   --batch B             batch size (default 64).  Each epoch visits the
 *                         training set in a fresh shuffled order and DROPS
 *                         the last partial batch (60000 / 64: 937 steps,
 *                         the last 32 images of each epoch's order unused).
 *   --epochs N            epochs (default 15)
 *   --optimizer O         sgd | adam | adamw (default sgd)
 *   --lr LR               learning rate (default 0.05 for sgd, 0.001 for
 *                         adam and adamw)
 *   --momentum M          SGD momentum (default 0.9)
 *   --nesterov            SGD: Nesterov momentum (default off)
 *   --weight-decay WD     default 0 (0.01 for adamw); L2 for sgd and adam,
 *                         decoupled for adamw
 *   --clip-norm C         clip the global gradient L2 norm to C (default 0:
 *                         off)
 *   --schedule S          constant | step | cosine (default cosine).  step:
 *                         lr * gamma every --step-epochs K epochs (defaults
 *                         K = 5, gamma = 0.1); cosine: from lr down to 0
 *                         over the whole run (t_max = epochs * steps per
 *                         epoch).  The schedule counts training steps.
 *   --step-epochs K, --gamma G   parameters of the step schedule
 *   --threads T           threads per step (default: the number of online
 *                         CPUs, at most 16)
 *   --seed S              seed of the initialisation and of the shuffles
 *                         (default 1)
 *   --save FILE           write a checkpoint (parameters, optimizer state,
 *                         step count) after every epoch; the last one is the
 *                         state at the end of the run
 *   --stop-after E        stop after epoch E, as if interrupted: the
 *                         schedule still spans --epochs, so a later
 *                         --resume with the same --epochs goes on exactly
 *   --resume FILE         load a checkpoint written by --save with the same
 *                         --layers and --optimizer, then continue from the
 *                         epoch its step count implies (steps / steps per
 *                         epoch; batches of a partly done epoch are skipped)
 *                         up to --epochs.  Same --seed, --batch and schedule
 *                         options give the same numbers as an uninterrupted
 *                         run.
 *   --eval FILE           load a checkpoint, print test loss and accuracy,
 *                         and exit (give the --layers and --activation it
 *                         was trained with; any optimizer's checkpoint loads).
 *                         A checkpoint holds tensors only: another --layers
 *                         is an error, another --activation goes unnoticed.
 *   --quiet               no header, no progress bar: epoch lines only
 *   --help                this text
 *
 * Output: on a terminal, a progress bar updated in place; otherwise (or with
 * --quiet) plain lines.  After each epoch:
 *   epoch E/N  train_loss X  test_loss Y  test_acc Z%  seconds S (steps/s R)
 * where train_loss is the mean of the epoch's batch losses and seconds times
 * the training loop only (batch copies and steps), not the loading of the
 * data or the evaluation.
 *
 * Defaults (SGD lr 0.05 momentum 0.9, cosine, 15 epochs) reach 89.87% test
 * accuracy with --seed 1 (89.88% and 89.91% with seeds 2 and 3) in about
 * 30 s of training on 2 cores.  BENCH.md's main job is
 *   stg-train --layers 512,256 --batch 64 --optimizer sgd --lr 0.05
 *             --momentum 0.9 --schedule constant --epochs 5
 *
 * Exit status: 0 on success; 1 when the data, a checkpoint or a training step
 * fails; 2 for a usage error (unknown option, missing or bad value).  Every
 * error is one line on stderr that names the file or option.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "idx.h"
#include "stgrad.h"

#define PROG "stg-train"
#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
enum { MAX_LAYERS = 32, MAX_WIDTH = 1 << 20, EVAL_BATCH = 1000, MAX_THREADS = 1024 };

static const char usage_text[] =
    "usage: " PROG " [options]\n"
    "Trains a classifier on Fashion-MNIST (or MNIST) IDX files with stgrad.\n"
    "\n"
    "  --data DIR          data directory with train-*/t10k-*-idx?-ubyte.gz\n"
    "                      (default " DEFAULT_DATA ")\n"
    "  --classes K         classes; every label must be below K (default 10)\n"
    "  --model M           mlp|lenet|lstm (default mlp); lenet: conv 16 3x3 pad 1 ->\n"
    "                      max pool 2 -> relu -> conv 32 3x3 pad 1 -> max pool 2 ->\n"
    "                      relu -> linear 128 -> relu -> linear, 10 epochs by\n"
    "                      default; lstm: each image read row by row (28 steps of\n"
    "                      28 pixels) by an LSTM, a linear classifier on its last\n"
    "                      output; Adam and 10 epochs by default\n"
    "  --hidden H          lstm: the state size (default 128)\n"
    "  --layers L          mlp: hidden sizes, comma-separated (default 512,256;\n"
    "                      \"none\" for a linear classifier)\n"
    "  --activation A      relu|tanh|sigmoid|gelu|leaky_relu|elu (default relu)\n"
    "  --batch-norm        batch norm after each convolution (lenet, whose\n"
    "                      convolutions then have no bias) or hidden linear\n"
    "                      layer (mlp, before the activation); default off\n"
    "  --dropout P         dropout with probability P after each hidden\n"
    "                      activation of the classifier (default 0: none)\n"
    "  --batch B           batch size (default 64); the last partial batch of\n"
    "                      each epoch is dropped\n"
    "  --epochs N          epochs (default 15; 10 for lenet and lstm)\n"
    "  --optimizer O       sgd|adam|adamw (default sgd; adam for lstm)\n"
    "  --lr LR             learning rate (default 0.05 for sgd, 0.001 for adam/adamw)\n"
    "  --momentum M        SGD momentum (default 0.9)\n"
    "  --nesterov          SGD with Nesterov momentum (default off)\n"
    "  --weight-decay WD   weight decay (default 0; 0.01 for adamw)\n"
    "  --clip-norm C       clip the global gradient norm to C (default 0: off)\n"
    "  --schedule S        constant|step|cosine (default cosine, to 0 over the run)\n"
    "  --step-epochs K     step schedule: multiply lr by --gamma every K epochs\n"
    "  --gamma G           (defaults K 5, G 0.1)\n"
    "  --threads T         threads (default: online CPUs, at most 16)\n"
    "  --seed S            seed of initialisation and shuffling (default 1)\n"
    "  --save FILE         save a checkpoint after every epoch\n"
    "  --stop-after E      stop after epoch E (the schedule still spans --epochs)\n"
    "  --resume FILE       load a checkpoint and continue up to --epochs\n"
    "  --eval FILE         print test loss and accuracy of a checkpoint, exit\n"
    "                      (give the --layers and --activation it was trained with)\n"
    "  --csv FILE          also write each epoch's figures to FILE (created anew):\n"
    "                      epoch,train_loss,test_loss,test_acc,seconds,steps_per_s\n"
    "  --quiet             no header or progress bar, epoch lines only\n"
    "  --mpi               data-parallel over the processes of an MPI run\n"
    "                      (mpirun -np N " PROG " --mpi ...): --batch is the global\n"
    "                      batch, each process takes its share of it; rank 0\n"
    "                      prints and writes checkpoints and the CSV\n"
    "  --help              this text\n"
    "\n"
    "After each epoch: epoch E/N  train_loss X  test_loss Y  test_acc Z%  seconds S\n"
    "(steps/s R), seconds timing the training loop only.  Exit status 1 on data,\n"
    "checkpoint or training errors, 2 on usage errors.\n";

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* On a terminal the progress bar may be on the current line: end it first. */
static int progress_active;

static void end_progress_line(void)
{
    if (progress_active) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
        progress_active = 0;
    }
}

PRINTF_LIKE(2, 3)
_Noreturn static void die(int status, const char *fmt, ...)
{
    end_progress_line();
    fflush(stdout);
    /* in an MPI run a usage error is every process's: rank 0 says it; other
     * errors name the process */
    if (status != 2 || dist_rank() == 0) {
        va_list ap;
        va_start(ap, fmt);
        if (dist_size() > 1)
            fprintf(stderr, PROG " (rank %d of %d): ", dist_rank(), dist_size());
        else
            fputs(PROG ": ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    dist_abort(status); /* every process of an MPI run, or this one */
}

#define usage_error(...) die(2, __VA_ARGS__)

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum act_kind {
    ACT_RELU,
    ACT_TANH,
    ACT_SIGMOID,
    ACT_GELU,
    ACT_LEAKY_RELU,
    ACT_ELU
} act_kind;
static const char *const act_names[] = {"relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu"};
#define NACT ((int)(sizeof act_names / sizeof act_names[0]))

typedef enum model_kind { MODEL_MLP, MODEL_LENET, MODEL_LSTM } model_kind;

typedef struct options {
    const char *data;
    model_kind model;
    int64_t img_rows, img_cols; /* of the data, for --model lenet */
    int layers_set, act_set, epochs_set;
    int batch_norm; /* --batch-norm */
    float dropout;  /* --dropout P */
    int nlayers;
    int64_t layers[MAX_LAYERS];
    act_kind act;
    int64_t batch;
    int epochs, stop_after;
    stg_optimizer optimizer;
    float lr, momentum, weight_decay, clip_norm, gamma;
    int lr_set, wd_set, nesterov, optimizer_set;
    int64_t hidden; /* --hidden: the LSTM's state size */
    stg_schedule_kind schedule;
    int step_epochs;
    int threads, classes;
    uint64_t seed;
    const char *save, *resume, *eval, *csv;
    int quiet;
    int mpi;                       /* --mpi */
    const stg_collective *hook;    /* with --mpi: the gradient sums */
} options;

/* The index of 's' in names[0..n), or a usage error listing them. */
static int choose(const char *opt, const char *s, const char *const *names, int n)
{
    char list[256] = "";
    for (int k = 0; k < n; k++) {
        if (!strcmp(s, names[k]))
            return k;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "",
                 names[k]);
    }
    usage_error("%s: '%s' is not one of %s", opt, s, list);
    return -1; /* not reached */
}

static int64_t parse_int(const char *opt, const char *s, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        usage_error("%s: '%s' is not an integer from %lld to %lld", opt, s, (long long)lo,
                    (long long)hi);
    return v;
}

/* A finite float, > lo when lo_open, >= lo otherwise, and < hi. */
static float parse_float(const char *opt, const char *s, double lo, int lo_open, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || !(v < hi) ||
        (lo_open ? v <= lo : v < lo) || !isfinite((float)v)) {
        if (hi < 1e30)
            usage_error("%s: '%s' is not a number %s %g and < %g", opt, s, lo_open ? ">" : ">=",
                        lo, hi);
        usage_error("%s: '%s' is not a finite number %s %g", opt, s, lo_open ? ">" : ">=", lo);
    }
    return (float)v;
}

static void parse_layers(options *o, const char *s)
{
    o->nlayers = 0;
    if (s[0] == '\0' || !strcmp(s, "none"))
        return;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        if (*p < '0' || *p > '9')
            usage_error("--layers: '%s' is not a comma-separated list of sizes", s);
        long long v = strtoll(p, &end, 10);
        if (errno == ERANGE || v < 1 || v > MAX_WIDTH)
            usage_error("--layers: '%s': each size must be from 1 to %d", s, MAX_WIDTH);
        if (o->nlayers == MAX_LAYERS)
            usage_error("--layers: '%s': at most %d hidden layers", s, MAX_LAYERS);
        o->layers[o->nlayers++] = v;
        if (*end == '\0')
            break;
        if (*end != ',')
            usage_error("--layers: '%s' is not a comma-separated list of sizes", s);
        p = end + 1;
    }
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 16 ? 16 : (int)n;
}

static void parse_options(options *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->data = DEFAULT_DATA;
    o->nlayers = 2;
    o->layers[0] = 512;
    o->layers[1] = 256;
    o->act = ACT_RELU;
    o->batch = 64;
    o->epochs = 15;
    o->optimizer = STG_OPTIM_SGD;
    o->momentum = 0.9f;
    o->schedule = STG_SCHED_COSINE;
    o->step_epochs = 5;
    o->gamma = 0.1f;
    o->threads = default_threads();
    o->classes = 10;
    o->seed = 1;

    int momentum_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (!strcmp(arg, "--nesterov")) {
            o->nesterov = 1;
            continue;
        }
        if (!strcmp(arg, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        if (!strcmp(arg, "--batch-norm")) {
            o->batch_norm = 1;
            continue;
        }
        if (!strcmp(arg, "--mpi")) {
            o->mpi = 1;
            continue;
        }
        static const char *const with_value[] = {
            "--data", "--model", "--layers", "--activation", "--batch", "--epochs", "--optimizer",
            "--lr", "--momentum", "--weight-decay", "--clip-norm", "--schedule",
            "--step-epochs", "--gamma", "--threads", "--seed", "--save", "--resume", "--eval", "--csv",
            "--stop-after", "--classes", "--dropout", "--hidden"};
        const char *name = NULL, *val = NULL;
        size_t nlen = strcspn(arg, "=");
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            if (strlen(with_value[k]) == nlen && !strncmp(arg, with_value[k], nlen))
                name = with_value[k];
        if (name == NULL) {
            if (!strncmp(arg, "--nesterov=", 11) || !strncmp(arg, "--quiet=", 8) ||
                !strncmp(arg, "--help=", 7) || !strncmp(arg, "--batch-norm=", 13))
                usage_error("%.*s takes no value (try --help)", (int)nlen, arg);
            usage_error("unknown option '%s' (try --help)", arg);
        }
        if (arg[nlen] == '=')
            val = arg + nlen + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            usage_error("%s needs a value (try --help)", name);

        if (!strcmp(name, "--data")) {
            if (val[0] == '\0')
                usage_error("--data: empty directory name");
            o->data = val;
        } else if (!strcmp(name, "--model")) {
            static const char *const names[] = {"mlp", "lenet", "lstm"};
            o->model = (model_kind)choose("--model", val, names, 3);
        } else if (!strcmp(name, "--layers")) {
            parse_layers(o, val);
            o->layers_set = 1;
        } else if (!strcmp(name, "--activation")) {
            o->act = (act_kind)choose(name, val, act_names, NACT);
            o->act_set = 1;
        } else if (!strcmp(name, "--dropout")) {
            o->dropout = parse_float(name, val, 0.0, 0, 1.0);
        } else if (!strcmp(name, "--hidden")) {
            o->hidden = parse_int(name, val, 1, 1 << 16);
        } else if (!strcmp(name, "--classes")) {
            o->classes = (int)parse_int(name, val, 2, 256);
        } else if (!strcmp(name, "--batch")) {
            o->batch = parse_int(name, val, 1, 1 << 20);
        } else if (!strcmp(name, "--epochs")) {
            o->epochs = (int)parse_int(name, val, 1, 1000000);
            o->epochs_set = 1;
        } else if (!strcmp(name, "--optimizer")) {
            static const char *const names[] = {"sgd", "adam", "adamw"};
            static const stg_optimizer kinds[] = {STG_OPTIM_SGD, STG_OPTIM_ADAM, STG_OPTIM_ADAMW};
            o->optimizer = kinds[choose(name, val, names, 3)];
            o->optimizer_set = 1;
        } else if (!strcmp(name, "--lr")) {
            o->lr = parse_float(name, val, 0.0, 1, HUGE_VAL);
            o->lr_set = 1;
        } else if (!strcmp(name, "--momentum")) {
            o->momentum = parse_float(name, val, 0.0, 0, 1.0);
            momentum_set = 1;
        } else if (!strcmp(name, "--weight-decay")) {
            o->weight_decay = parse_float(name, val, 0.0, 0, HUGE_VAL);
            o->wd_set = 1;
        } else if (!strcmp(name, "--clip-norm")) {
            o->clip_norm = parse_float(name, val, 0.0, 0, HUGE_VAL);
        } else if (!strcmp(name, "--schedule")) {
            static const char *const names[] = {"constant", "step", "cosine"};
            static const stg_schedule_kind kinds[] = {STG_SCHED_CONSTANT, STG_SCHED_STEP,
                                                      STG_SCHED_COSINE};
            o->schedule = kinds[choose(name, val, names, 3)];
        } else if (!strcmp(name, "--stop-after")) {
            o->stop_after = (int)parse_int(name, val, 1, 1000000);
        } else if (!strcmp(name, "--step-epochs")) {
            o->step_epochs = (int)parse_int(name, val, 1, 1000000);
        } else if (!strcmp(name, "--gamma")) {
            o->gamma = parse_float(name, val, 0.0, 1, HUGE_VAL);
        } else if (!strcmp(name, "--threads")) {
            o->threads = (int)parse_int(name, val, 1, MAX_THREADS);
        } else if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            if (val[0] < '0' || val[0] > '9')
                usage_error("--seed: '%s' is not a non-negative integer", val);
            unsigned long long v = strtoull(val, &end, 10);
            if (*end != '\0' || errno == ERANGE)
                usage_error("--seed: '%s' is not an integer from 0 to %llu", val,
                            (unsigned long long)UINT64_MAX);
            o->seed = v;
        } else if (!strcmp(name, "--save")) {
            if (val[0] == '\0')
                usage_error("--save: empty file name");
            o->save = val;
        } else if (!strcmp(name, "--resume")) {
            if (val[0] == '\0')
                usage_error("--resume: empty file name");
            o->resume = val;
        } else if (!strcmp(name, "--csv")) {
            if (!*val)
                usage_error("--csv: empty file name");
            o->csv = val;
        } else if (!strcmp(name, "--eval")) {
            if (val[0] == '\0')
                usage_error("--eval: empty file name");
            o->eval = val;
        }
    }

    if (o->model != MODEL_MLP && (o->layers_set || o->act_set))
        usage_error("--layers and --activation apply to --model mlp only");
    if (o->model != MODEL_LSTM && o->hidden)
        usage_error("--hidden applies to --model lstm only");
    if (o->model == MODEL_LSTM && o->batch_norm)
        usage_error("--batch-norm applies to --model mlp and lenet only");
    if (o->model == MODEL_LSTM) { /* a linear classifier on the last state; Adam */
        o->nlayers = 0;
        if (!o->hidden)
            o->hidden = 128;
        if (!o->epochs_set)
            o->epochs = 10;
        if (!o->optimizer_set)
            o->optimizer = STG_OPTIM_ADAM;
    }
    if (o->model == MODEL_LENET) { /* its classifier: 128 hidden, relu */
        o->nlayers = 1;
        o->layers[0] = 128;
        o->act = ACT_RELU;
        if (!o->epochs_set)
            o->epochs = 10;
    }
    if (o->stop_after > o->epochs)
        usage_error("--stop-after: %d is more than --epochs %d", o->stop_after, o->epochs);
    if (!o->lr_set)
        o->lr = o->optimizer == STG_OPTIM_SGD ? 0.05f : 0.001f;
    if (!o->wd_set)
        o->weight_decay = o->optimizer == STG_OPTIM_ADAMW ? 0.01f : 0.0f;
    if (o->optimizer != STG_OPTIM_SGD && (momentum_set || o->nesterov))
        usage_error("--momentum and --nesterov apply to --optimizer sgd only");
    if (o->nesterov && o->momentum <= 0.0f)
        usage_error("--nesterov needs --momentum > 0");
    if (o->eval && (o->resume || o->save || o->csv))
        usage_error("--eval cannot be combined with --resume, --save or --csv");
    if (o->mpi && !dist_available())
        usage_error("--mpi: this build has no MPI (install libopenmpi-dev and openmpi-bin, "
                    "then configure again)");
    /* each process would normalise, and drop, over its share alone */
    if (o->mpi && (o->eval || o->batch_norm || o->dropout > 0.0f))
        usage_error("--mpi cannot be combined with --eval, --batch-norm or --dropout");
}

/* ------------------------------------------------------------------------ */
/* Random numbers: splitmix64, for seeds and shuffles                        */
/* ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A seed for stream 'k' (tensor k, or the shuffle of epoch k) of 'seed'. */
static uint64_t derive_seed(uint64_t seed, uint64_t domain, uint64_t k)
{
    uint64_t s = seed;
    uint64_t a = splitmix64(&s);
    s = a ^ (domain * 0xD1B54A32D192ED03ull);
    uint64_t b = splitmix64(&s);
    s = b ^ k;
    return splitmix64(&s);
}

/* Uniform in [0, n), without modulo bias. */
static uint64_t below(uint64_t *state, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t r = splitmix64(state);
        if (r < limit)
            return r % n;
    }
}

/* Fisher-Yates shuffle of 0..n-1 for 'epoch' (counted from 0): the order
 * depends only on (seed, epoch), so a resumed run sees the same orders. */
static void epoch_order(int32_t *perm, int64_t n, uint64_t seed, int epoch)
{
    uint64_t st = derive_seed(seed, 2, (uint64_t)epoch);
    for (int64_t i = 0; i < n; i++)
        perm[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)below(&st, (uint64_t)i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ------------------------------------------------------------------------ */
/* The model                                                                 */
/* ------------------------------------------------------------------------ */

/* How a parameter starts: PyTorch's defaults for its layer. */
typedef enum param_init {
    INIT_WEIGHT, /* Kaiming-uniform, a = sqrt(5): uniform in +-1/sqrt(fan_in) */
    INIT_BIAS,   /* uniform in +-1/sqrt(fan_in) */
    INIT_ONES,   /* batch norm's weight */
    INIT_ZEROS   /* batch norm's bias */
} param_init;

enum { MAX_PARAMS = 4 * (MAX_LAYERS + 2) }; /* weight, bias, batch norm's two per layer */

typedef struct model {
    stg_plan *plan;
    int64_t batch, in, classes;
    int nparams, nstats;
    stg_tensor x, labels, logits, loss;
    stg_tensor params[MAX_PARAMS];
    int64_t fan_in[MAX_PARAMS];
    param_init init[MAX_PARAMS];
    char names[MAX_PARAMS][24];
    char stat_names[MAX_PARAMS][32];
} model;

static stg_tensor activate(stg_graph *g, stg_tensor h, act_kind a)
{
    switch (a) {
    case ACT_RELU: return stg_relu(g, h);
    case ACT_TANH: return stg_tanh(g, h);
    case ACT_SIGMOID: return stg_sigmoid(g, h);
    case ACT_GELU: return stg_gelu(g, h);
    case ACT_LEAKY_RELU: return stg_leaky_relu(g, h, 0.01f);
    case ACT_ELU: return stg_elu(g, h, 1.0f);
    }
    return stg_relu(g, h);
}

/* Adds parameter k of 'm' (named, with how it starts and its fan-in). */
static stg_tensor add_param(model *m, stg_graph *g, const char *name, int nd, const int64_t *d,
                            param_init init, int64_t fan_in)
{
    int k = m->nparams++;
    snprintf(m->names[k], sizeof m->names[k], "%s", name);
    m->params[k] = stg_param(g, m->names[k], nd, d);
    m->fan_in[k] = fan_in;
    m->init[k] = init;
    return m->params[k];
}

/* Batch norm 'bn<layer>' over the (N, C, ...) tensor h, as nn.BatchNorm:
 * weight 1, bias 0, running mean 0 and variance 1, momentum 0.1. */
static stg_tensor add_batch_norm(model *m, stg_graph *g, stg_tensor h, int layer, int64_t c)
{
    char wn[24], bn[24];
    snprintf(wn, sizeof wn, "bn%d.weight", layer);
    snprintf(bn, sizeof bn, "bn%d.bias", layer);
    stg_tensor w = add_param(m, g, wn, 1, &c, INIT_ONES, 0);
    stg_tensor b = add_param(m, g, bn, 1, &c, INIT_ZEROS, 0);
    stg_tensor st[2];
    static const char *const what[2] = {"running_mean", "running_var"};
    for (int k = 0; k < 2; k++) {
        char *name = m->stat_names[m->nstats++];
        snprintf(name, sizeof m->stat_names[0], "bn%d.%s", layer, what[k]);
        st[k] = stg_stat(g, name, 1, &c, (float)k);
    }
    return stg_batch_norm(g, h, w, b, st[0], st[1], NULL);
}

/* lenet's convolutional part, from flat images of o->img_rows x
 * o->img_cols pixels: conv 16 3x3 pad 1 -> max pool 2 -> relu -> conv 32
 * 3x3 pad 1 -> max pool 2 -> relu, flattened; *width gets its size.  With
 * --batch-norm each convolution (without its bias, which the norm cancels)
 * is followed by a batch norm. */
static stg_tensor lenet_features(model *m, stg_graph *g, const options *o, int64_t batch,
                                 int64_t *width)
{
    int64_t rows = o->img_rows, cols = o->img_cols;
    stg_tensor h = stg_reshape(g, m->x, 4, (int64_t[]){batch, 1, rows, cols});
    stg_conv_params same = {.padding = {1, 1}};
    stg_pool_params two = {{2, 2}, {0, 0}, {0, 0}};
    static const int64_t ch[3] = {1, 16, 32};
    for (int l = 0; l < 2; l++) {
        char wn[24], bn[24];
        snprintf(wn, sizeof wn, "conv%d.weight", l + 1);
        snprintf(bn, sizeof bn, "conv%d.bias", l + 1);
        stg_tensor w = add_param(m, g, wn, 4, (int64_t[]){ch[l + 1], ch[l], 3, 3}, INIT_WEIGHT,
                                 ch[l] * 9);
        stg_tensor b = o->batch_norm ? (stg_tensor){-1}
                                     : add_param(m, g, bn, 1, &ch[l + 1], INIT_BIAS, ch[l] * 9);
        h = stg_conv2d(g, h, w, b, &same);
        if (o->batch_norm)
            h = add_batch_norm(m, g, h, l + 1, ch[l + 1]);
        h = stg_relu(g, stg_max_pool2d(g, h, &two));
        rows /= 2;
        cols /= 2;
    }
    *width = 32 * rows * cols;
    return stg_reshape(g, h, 2, (int64_t[]){batch, *width});
}

/* The LSTM's part: each image's rows as a sequence (batch-first), and its
 * output at the last step; *width gets H.  Its parameters are named as in
 * PyTorch's nn.LSTM inside a module 'lstm' and start, as there, uniform in
 * +-1/sqrt(H). */
static stg_tensor lstm_features(model *m, stg_graph *g, const options *o, int64_t batch,
                                int64_t *width)
{
    int64_t rows = o->img_rows, cols = o->img_cols, H = o->hidden;
    stg_rnn r = {.mode = STG_LSTM, .input_size = cols, .hidden_size = H, .batch_first = 1};
    if (stg_rnn_params(g, &r, "lstm") != STG_OK)
        return (stg_tensor){-1};
    stg_tensor ps[4] = {r.weight_ih[0], r.weight_hh[0], r.bias_ih[0], r.bias_hh[0]};
    for (int k = 0; k < 4; k++) {
        int j = m->nparams++;
        m->params[j] = ps[k];
        m->fan_in[j] = H;
        m->init[j] = INIT_BIAS;
        snprintf(m->names[j], sizeof m->names[j], "lstm parameter %d", k);
    }
    stg_tensor x = stg_reshape(g, m->x, 3, (int64_t[]){batch, rows, cols});
    stg_tensor out = stg_rnn_apply(g, &r, x, (stg_tensor){-1}, (stg_tensor){-1}, NULL, NULL);
    *width = H;
    return stg_reshape(g, stg_slice(g, out, 1, rows - 1, rows, 1), 2, (int64_t[]){batch, H});
}

/* Builds the model for 'batch' rows.  A training plan ('train') minimises the
 * loss with the optimizer 'optim' of 'o'; otherwise the plan is an inference
 * plan that keeps the logits and the loss and reads its parameters from
 * 'share' (the training model's plan).  Returns 0, or -1 with a message in
 * 'msg'. */
static int model_build(model *m, const options *o, int64_t batch, int64_t in, int64_t classes,
                       int train, stg_optimizer optim, float momentum, const stg_plan *share,
                       char *msg, size_t len)
{
    memset(m, 0, sizeof *m);
    m->batch = batch;
    m->in = in;
    m->classes = classes;
    stg_graph *g = stg_graph_new();
    if (g == NULL) {
        snprintf(msg, len, "out of memory building the graph");
        return -1;
    }
    int64_t xd[2] = {batch, in}, ld[1] = {batch};
    m->x = stg_input(g, "x", 2, xd);
    m->labels = stg_input_i32(g, "labels", 1, ld);
    stg_tensor h = m->x;
    int64_t width = in;
    if (o->model == MODEL_LENET)
        h = lenet_features(m, g, o, batch, &width);
    else if (o->model == MODEL_LSTM)
        h = lstm_features(m, g, o, batch, &width);
    int bn_layer = o->model == MODEL_LENET ? 3 : 1;
    for (int l = 0; l <= o->nlayers; l++) {
        int64_t out = l < o->nlayers ? o->layers[l] : classes;
        int64_t wd[2] = {width, out}, bd[1] = {out};
        char wn[24], bn[24];
        snprintf(wn, sizeof wn, "fc%d.weight", l + 1);
        snprintf(bn, sizeof bn, "fc%d.bias", l + 1);
        stg_tensor w = add_param(m, g, wn, 2, wd, INIT_WEIGHT, width);
        stg_tensor b = add_param(m, g, bn, 1, bd, INIT_BIAS, width);
        h = stg_add(g, stg_matmul(g, h, w), b);
        if (l < o->nlayers) {
            if (o->batch_norm && o->model == MODEL_MLP)
                h = add_batch_norm(m, g, h, bn_layer++, out);
            h = activate(g, h, o->act);
            if (o->dropout > 0.0f)
                h = stg_dropout(g, h, o->dropout);
        }
        width = out;
    }
    m->logits = h;
    m->loss = stg_softmax_cross_entropy(g, m->logits, m->labels, STG_REDUCE_MEAN);
    if (!train) {
        stg_graph_keep(g, m->logits);
        stg_graph_keep(g, m->loss);
    }
    if (stg_graph_status(g) != STG_OK) {
        snprintf(msg, len, "building the model: %s", stg_graph_message(g));
        stg_graph_free(g);
        return -1;
    }

    stg_plan_options po;
    stg_plan_options_init(&po);
    po.threads = o->threads;
    if (train) {
        po.optimizer = optim;
        po.lr = o->lr;
        po.momentum = optim == STG_OPTIM_SGD ? momentum : 0.0f;
        po.nesterov = optim == STG_OPTIM_SGD && momentum > 0.0f ? o->nesterov : 0;
        po.weight_decay = o->weight_decay;
        po.clip_norm = o->clip_norm;
        po.collective = o->hook;
    } else {
        po.optimizer = STG_OPTIM_NONE;
        po.inference = 1; /* evaluation: dropout (and the like) in inference mode */
        po.share_params = share; /* no copy of the parameters */
    }
    stg_tensor none = {-1};
    stg_status s = stg_plan_create(g, train ? m->loss : none, &po, &m->plan);
    stg_graph_free(g);
    if (s != STG_OK) {
        snprintf(msg, len, "creating the plan: %s: %s", stg_status_name(s),
                 stg_plan_last_message());
        m->plan = NULL;
        return -1;
    }
    return 0;
}

static void model_free(model *m)
{
    stg_plan_free(m->plan);
    m->plan = NULL;
}

/* PyTorch nn.Linear's initialisation, each tensor from its own seed. */
static void model_init(model *m, uint64_t seed)
{
    for (int k = 0; k < m->nparams; k++) {
        uint64_t s = derive_seed(seed, 1, (uint64_t)k);
        float bound = m->fan_in[k] > 0 ? 1.0f / sqrtf((float)m->fan_in[k]) : 0.0f;
        stg_status st = STG_OK;
        switch (m->init[k]) {
        case INIT_WEIGHT:
            st = stg_plan_init(m->plan, m->params[k], STG_INIT_KAIMING_UNIFORM, sqrtf(5.0f),
                               0.0f, s);
            break;
        case INIT_BIAS:
            st = stg_plan_init(m->plan, m->params[k], STG_INIT_UNIFORM, -bound, bound, s);
            break;
        case INIT_ONES:
            st = stg_plan_init(m->plan, m->params[k], STG_INIT_ONES, 0.0f, 0.0f, s);
            break;
        case INIT_ZEROS:
            st = stg_plan_init(m->plan, m->params[k], STG_INIT_ZEROS, 0.0f, 0.0f, s);
            break;
        }
        if (st != STG_OK)
            die(1, "initialising %s: %s", m->names[k], stg_status_message(st));
    }
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                                */
/* ------------------------------------------------------------------------ */

/* Forward-only plans for the test set: 'full' with min(EVAL_BATCH, n) rows,
 * and 'rest' for the n % rows left over (rest.plan NULL when none). */
typedef struct evaluator {
    model full, rest;
} evaluator;

static void eval_run_batch(model *m, const idx_split *d, int64_t start, double *loss_sum,
                           int64_t *correct)
{
    float *x = stg_plan_data(m->plan, m->x);
    int32_t *lab = stg_plan_data_i32(m->plan, m->labels);
    if (x == NULL || lab == NULL)
        die(1, "internal error: evaluation plan has no input storage");
    memcpy(x, d->images + start * d->features, (size_t)(m->batch * d->features) * sizeof(float));
    memcpy(lab, d->labels + start, (size_t)m->batch * sizeof(int32_t));
    stg_status s = stg_plan_forward(m->plan);
    if (s != STG_OK)
        die(1, "evaluating test images %lld..%lld: %s", (long long)start,
            (long long)(start + m->batch - 1), stg_plan_message(m->plan));
    const float *logits = stg_plan_data(m->plan, m->logits);
    const float *loss = stg_plan_data(m->plan, m->loss);
    if (logits == NULL || loss == NULL)
        die(1, "internal error: evaluation plan does not keep the logits and the loss");
    *loss_sum += (double)loss[0] * (double)m->batch;
    for (int64_t i = 0; i < m->batch; i++) {
        const float *row = logits + i * m->classes;
        int64_t best = 0;
        for (int64_t c = 1; c < m->classes; c++)
            if (row[c] > row[best])
                best = c;
        if (best == lab[i])
            (*correct)++;
    }
}

/* Test loss (mean over images) and accuracy (%) of the parameters of the
 * model the evaluator was built for (its plans read them in place).  The
 * processes of an MPI run take every size-th batch each, and add up. */
static void evaluate(evaluator *ev, const idx_split *test, double *loss, double *acc)
{
    double loss_sum = 0.0;
    int64_t correct = 0, start = 0, k = 0;
    int size = dist_size(), rank = dist_rank();
    for (; start + ev->full.batch <= test->n; start += ev->full.batch, k++)
        if (k % size == rank)
            eval_run_batch(&ev->full, test, start, &loss_sum, &correct);
    if (ev->rest.plan && k % size == rank)
        eval_run_batch(&ev->rest, test, start, &loss_sum, &correct);
    double sums[2] = {loss_sum, (double)correct};
    dist_sum(sums, 2);
    *loss = sums[0] / (double)test->n;
    *acc = 100.0 * sums[1] / (double)test->n;
}

static void evaluator_build(evaluator *ev, const options *o, const idx_split *test,
                            int64_t classes, const model *src)
{
    char msg[1024];
    memset(ev, 0, sizeof *ev);
    int64_t b = test->n < EVAL_BATCH ? test->n : EVAL_BATCH;
    if (model_build(&ev->full, o, b, test->features, classes, 0, STG_OPTIM_NONE, 0.0f,
                    src->plan, msg, sizeof msg))
        die(1, "evaluation model: %s", msg);
    int64_t r = test->n % b;
    if (r && model_build(&ev->rest, o, r, test->features, classes, 0, STG_OPTIM_NONE, 0.0f,
                         src->plan, msg, sizeof msg))
        die(1, "evaluation model: %s", msg);
}

static void evaluator_free(evaluator *ev)
{
    model_free(&ev->full);
    model_free(&ev->rest);
}

/* ------------------------------------------------------------------------ */
/* Data                                                                      */
/* ------------------------------------------------------------------------ */

static void load_split(const char *dir, const char *prefix, int classes, idx_split *s)
{
    char msg[1024];
    if (idx_load_split(dir, prefix, classes, s, msg, sizeof msg))
        die(1, "%s", msg);
    if (s->n < 1 || s->features < 1)
        die(1, "%s: %s split is empty", dir, prefix);
    if (s->n > INT32_MAX)
        die(1, "%s: %s split has too many images", dir, prefix);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void describe(char *buf, size_t len, const options *o, int64_t in, int64_t classes)
{
    size_t used;
    if (o->model == MODEL_LENET) {
        used = (size_t)snprintf(buf, len, "lenet %lldx%lld: conv 16 3x3 -> pool 2 -> conv 32 "
                                "3x3 -> pool 2 -> %lld-128-%lld relu", (long long)o->img_rows,
                                (long long)o->img_cols,
                                (long long)(32 * (o->img_rows / 4) * (o->img_cols / 4)),
                                (long long)classes);
    } else {
        used = (size_t)snprintf(buf, len, "%lld", (long long)in);
        for (int l = 0; l < o->nlayers && used < len; l++)
            used += (size_t)snprintf(buf + used, len - used, "-%lld", (long long)o->layers[l]);
        if (used < len)
            used += (size_t)snprintf(buf + used, len - used, "-%lld %s", (long long)classes,
                                     act_names[o->act]);
    }
    if (o->model == MODEL_LSTM)
        used = (size_t)snprintf(buf, len, "lstm %lld steps of %lld, hidden %lld -> %lld",
                                (long long)o->img_rows, (long long)o->img_cols,
                                (long long)o->hidden, (long long)classes);
    if (o->batch_norm && used < len)
        used += (size_t)snprintf(buf + used, len - used, ", batch norm");
    if (o->dropout > 0.0f && used < len)
        snprintf(buf + used, len - used, ", dropout %g", (double)o->dropout);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

/* A guess at the cause of a checkpoint that does not fit the plan. */
static const char *checkpoint_hint(const char *m)
{
    if (strstr(m, "momentum_buffer") || strstr(m, "exp_avg"))
        return " (saved with another --optimizer or --momentum?)";
    if (strstr(m, "'bn") || strstr(m, "conv1.bias") || strstr(m, "conv2.bias"))
        return " (saved with --batch-norm, or without it?)";
    if (strstr(m, "shape") || strstr(m, "has no tensor 'fc") || strstr(m, "has tensor 'fc") ||
        strstr(m, "far more than"))
        return " (saved with other --layers?)";
    return "";
}

/* The reason a checkpoint did not load: the plan's message (which names the
 * file) or, failing that, the status's. */
static void checkpoint_error(const char *opt, const char *path, const char *m, stg_status st)
{
    if (m && m[0])
        die(1, "%s: %s%s", opt, m, checkpoint_hint(m));
    die(1, "%s: %s: %s", opt, path, stg_status_message(st));
}

/* Nonzero when a load error may only mean that the plan has another
 * optimizer-state layout than the file (so another layout may load it). */
static int layout_error(const char *m)
{
    return strstr(m, "momentum_buffer") || strstr(m, "exp_avg") || strstr(m, "has no tensor") ||
           strstr(m, "which this plan does not have") || strstr(m, "far more than");
}

/* --eval: a checkpoint holds the optimizer state of the run that wrote it and
 * loads only into a plan with that state, so plans with each state layout
 * (the options given first; then SGD with momentum, plain SGD, Adam) are
 * tried until one accepts it.  When none does, the first error that is not
 * merely about the state layout is reported (a corrupt file, a parameter
 * with another shape); failing that, the plain SGD plan's, whose plan holds
 * only the parameters. */
static void load_for_eval(model *m, const options *o, int64_t in, int64_t classes)
{
    struct {
        stg_optimizer opt;
        float momentum;
    } tries[] = {{o->optimizer, o->momentum},
                 {STG_OPTIM_SGD, 0.9f},
                 {STG_OPTIM_SGD, 0.0f},
                 {STG_OPTIM_ADAM, 0.0f}};
    char msg[1024], why[1024] = "";
    stg_status why_status = STG_OK;
    int why_final = 0;
    for (size_t t = 0; t < sizeof tries / sizeof *tries; t++) {
        if (model_build(m, o, 1, in, classes, 1, tries[t].opt, tries[t].momentum, NULL, msg,
                        sizeof msg))
            die(1, "model: %s", msg);
        stg_status s = stg_plan_load(m->plan, o->eval);
        if (s == STG_OK)
            return;
        const char *pm = stg_plan_message(m->plan);
        int layout = s == STG_FORMAT && layout_error(pm);
        if (!why_final && (!layout || why_status == STG_OK ||
                           (tries[t].opt == STG_OPTIM_SGD && tries[t].momentum == 0.0f))) {
            why_status = s;
            snprintf(why, sizeof why, "%s", pm);
            why_final = !layout;
        }
        model_free(m);
        if (s != STG_FORMAT) /* unreadable file: other layouts will not help */
            break;
    }
    checkpoint_error("--eval", o->eval, why, why_status);
}

/* ------------------------------------------------------------------------ */
/* Progress bar                                                              */
/* ------------------------------------------------------------------------ */

static void progress(int epoch, int epochs, int64_t i, int64_t n, double rate, double loss)
{
    printf("\repoch %d/%d  batch %lld/%lld  %.1f steps/s  loss %.4f\033[K", epoch, epochs,
           (long long)i, (long long)n, rate, loss);
    fflush(stdout);
    progress_active = 1;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

/* lenet's geometry: the images' size, which the two poolings halve twice. */
static void set_geometry(options *o, const idx_split *s)
{
    o->img_rows = s->rows;
    o->img_cols = s->cols;
    if (o->model == MODEL_LENET && (s->rows < 4 || s->cols < 4))
        die(1, "--model lenet needs images of at least 4 x 4 pixels; these are %lld x %lld",
            (long long)s->rows, (long long)s->cols);
}

static int run_eval(options *o)
{
    idx_split test = {0};
    load_split(o->data, "t10k", o->classes, &test);
    set_geometry(o, &test);
    int64_t classes = o->classes;
    model m;
    load_for_eval(&m, o, test.features, classes);
    evaluator ev;
    evaluator_build(&ev, o, &test, classes, &m);
    double loss, acc;
    evaluate(&ev, &test, &loss, &acc);
    printf("test_loss %.4f  test_acc %.2f%%  (%s, %lld steps, %lld test images)\n", loss, acc,
           o->eval, (long long)stg_plan_steps(m.plan), (long long)test.n);
    evaluator_free(&ev);
    model_free(&m);
    idx_split_free(&test);
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    parse_options(&o, argc, argv);
    if (o.eval)
        return run_eval(&o);
    char dmsg[256];
    stg_collective hook;
    if (o.mpi && dist_start(&argc, &argv, dmsg, sizeof dmsg))
        die(1, "--mpi: %s", dmsg);
    int nproc = dist_size(), rank = dist_rank(), lead = rank == 0;
    if (o.batch % nproc)
        die(2, "--batch: %lld is not a multiple of the %d processes", (long long)o.batch, nproc);
    int64_t local = o.batch / nproc; /* this process's share of each batch */
    if (o.mpi) {
        if (dist_hook(&hook, dmsg, sizeof dmsg))
            die(1, "--mpi: %s", dmsg);
        o.hook = &hook;
    }
    if (!lead)
        o.quiet = 1;

    /* every header first: the two splits must agree before any data is read */
    idx_split train = {0}, test = {0};
    char hmsg[1024];
    if (idx_peek_split(o.data, "train", &train, hmsg, sizeof hmsg) ||
        idx_peek_split(o.data, "t10k", &test, hmsg, sizeof hmsg))
        die(1, "%s", hmsg);
    if (test.rows != train.rows || test.cols != train.cols)
        die(1, "%s: test images are %lld x %lld pixels, training images %lld x %lld", o.data,
            (long long)test.rows, (long long)test.cols, (long long)train.rows,
            (long long)train.cols);
    if (o.batch > train.n)
        die(2, "--batch: %lld is more than the %lld training images", (long long)o.batch,
            (long long)train.n);
    set_geometry(&o, &train);
    load_split(o.data, "train", o.classes, &train);
    load_split(o.data, "t10k", o.classes, &test);
    int64_t classes = o.classes;

    char msg[1024];
    model m;
    if (model_build(&m, &o, local, train.features, classes, 1, o.optimizer, o.momentum, NULL,
                    msg, sizeof msg))
        die(1, "model: %s", msg);
    if (o.mpi && dist_prepare(m.plan, dmsg, sizeof dmsg))
        die(1, "--mpi: %s", dmsg);
    evaluator ev;
    evaluator_build(&ev, &o, &test, classes, &m);

    int64_t spe = train.n / o.batch; /* steps per epoch; the partial batch is dropped */
    stg_schedule sched;
    memset(&sched, 0, sizeof sched);
    sched.kind = o.schedule;
    sched.step_size = (int64_t)o.step_epochs * spe;
    sched.gamma = o.gamma;
    sched.t_max = (int64_t)o.epochs * spe;
    sched.lr_min = 0.0f;
    stg_status st = stg_plan_set_schedule(m.plan, &sched);
    if (st != STG_OK)
        die(2, "--schedule: %s", stg_status_message(st));

    model_init(&m, o.seed);
    int start_epoch = 0;
    int64_t skip = 0;
    if (o.resume) {
        st = stg_plan_load(m.plan, o.resume);
        if (st != STG_OK)
            checkpoint_error("--resume", o.resume, stg_plan_message(m.plan), st);
        int64_t steps = stg_plan_steps(m.plan);
        start_epoch = (int)(steps / spe < INT_MAX ? steps / spe : INT_MAX);
        skip = steps % spe;
    }

    int tty = isatty(1) && !o.quiet;
    if (!o.quiet) {
        char arch[256];
        describe(arch, sizeof arch, &o, train.features, classes);
        static const char *const opt_names[] = {"none", "sgd", "adam", "adamw"};
        static const char *const sched_names[] = {"constant", "step", "cosine"};
        printf("%s: %s, %lld train / %lld test images, batch %lld (%lld steps/epoch), %s lr %g",
               PROG, arch, (long long)train.n, (long long)test.n, (long long)o.batch,
               (long long)spe, opt_names[o.optimizer], (double)o.lr);
        if (o.optimizer == STG_OPTIM_SGD)
            printf(" momentum %g%s", (double)o.momentum, o.nesterov ? " nesterov" : "");
        if (o.weight_decay > 0.0f)
            printf(" weight_decay %g", (double)o.weight_decay);
        if (o.clip_norm > 0.0f)
            printf(" clip_norm %g", (double)o.clip_norm);
        printf(" %s, %d threads, seed %llu", sched_names[o.schedule], stg_plan_threads(m.plan),
               (unsigned long long)o.seed);
        if (o.mpi)
            printf(", %d MPI processes of %lld images each, %d gradient buckets", nproc,
                   (long long)local, stg_plan_buckets(m.plan));
        printf("\n");
        stg_gemm_info gi;
        if (stg_plan_gemm_info(m.plan, &gi) == STG_OK)
            printf("%s: %s\n", PROG, gi.why);
        if (o.resume)
            printf("%s: resumed from %s at step %lld (%d epochs and %lld steps done)\n", PROG,
                   o.resume, (long long)stg_plan_steps(m.plan), start_epoch, (long long)skip);
        fflush(stdout);
    }
    int end_epoch = o.stop_after ? o.stop_after : o.epochs;
    if (start_epoch >= end_epoch) {
        if (lead)
            printf("%s: %s has done %lld steps, %d epochs; nothing left to do for --%s %d\n", PROG,
               o.resume, (long long)stg_plan_steps(m.plan), start_epoch,
               o.stop_after ? "stop-after" : "epochs", end_epoch);
        evaluator_free(&ev);
        model_free(&m);
        idx_split_free(&train);
        idx_split_free(&test);
        dist_finish();
        return 0;
    }

    int32_t *perm = malloc((size_t)train.n * sizeof *perm);
    if (perm == NULL)
        die(1, "out of memory");
    float *x = stg_plan_data(m.plan, m.x);
    int32_t *lab = stg_plan_data_i32(m.plan, m.labels);
    if (x == NULL || lab == NULL)
        die(1, "internal error: the plan has no storage for the inputs");
    const int64_t F = train.features;
    double total_seconds = 0.0;
    double last_loss = 0.0, last_acc = 0.0;
    FILE *csv = NULL;
    if (o.csv && lead) {
        if (!(csv = fopen(o.csv, "w")))
            die(1, "--csv: cannot create '%s': %s", o.csv, strerror(errno));
        fprintf(csv, "epoch,train_loss,test_loss,test_acc,seconds,steps_per_s\n");
    }

    for (int epoch = start_epoch; epoch < end_epoch; epoch++) {
        epoch_order(perm, train.n, o.seed, epoch);
        double loss_sum = 0.0;
        int64_t first = epoch == start_epoch ? skip : 0;
        double t0 = now_seconds(), next_draw = t0;
        for (int64_t b = first; b < spe; b++) {
            const int32_t *idx = perm + b * o.batch + rank * local;
            for (int64_t r = 0; r < local; r++) {
                memcpy(x + r * F, train.images + (int64_t)idx[r] * F, (size_t)F * sizeof(float));
                lab[r] = train.labels[idx[r]];
            }
            st = stg_plan_step(m.plan);
            if (st != STG_OK)
                die(1, "epoch %d, batch %lld (step %lld): %s: %s", epoch + 1, (long long)b + 1,
                    (long long)stg_plan_steps(m.plan) + 1, stg_status_name(st),
                    stg_plan_message(m.plan));
            loss_sum += (double)stg_plan_loss(m.plan);
            if (tty) {
                double t = now_seconds();
                if (t >= next_draw || b + 1 == spe) {
                    progress(epoch + 1, o.epochs, b + 1, spe,
                             (double)(b + 1 - first) / (t - t0 > 0 ? t - t0 : 1e-9),
                             loss_sum / (double)(b + 1 - first));
                    next_draw = t + 0.1;
                }
            }
        }
        double seconds = now_seconds() - t0;
        total_seconds += seconds;
        int64_t done = spe - first;
        evaluate(&ev, &test, &last_loss, &last_acc);
        dist_sum(&loss_sum, 1); /* the processes' losses: means over equal shares */
        loss_sum /= nproc;
        end_progress_line();
        if (lead)
            printf("epoch %d/%d  train_loss %.4f  test_loss %.4f  test_acc %.2f%%  seconds %.2f "
                   "(steps/s %.1f)\n",
                   epoch + 1, o.epochs, done ? loss_sum / (double)done : 0.0, last_loss,
                   last_acc, seconds, seconds > 0 ? (double)done / seconds : 0.0);
        fflush(stdout);
        if (csv) {
            fprintf(csv, "%d,%.6f,%.6f,%.4f,%.4f,%.3f\n", epoch + 1,
                    done ? loss_sum / (double)done : 0.0, last_loss, last_acc, seconds,
                    seconds > 0 ? (double)done / seconds : 0.0);
            if (fflush(csv) || ferror(csv))
                die(1, "--csv: writing '%s' failed: %s", o.csv, strerror(errno));
        }
        if (o.save && lead) {
            st = stg_plan_save(m.plan, o.save);
            if (st != STG_OK)
                checkpoint_error("--save", o.save, stg_plan_message(m.plan), st);
        }
    }
    if (!o.quiet)
        printf("%s: final test_acc %.2f%%  test_loss %.4f  training seconds %.2f%s%s\n", PROG,
               last_acc, last_loss, total_seconds, o.save ? "  saved " : "",
               o.save ? o.save : "");
    if (o.mpi && !o.quiet) {
        double exchange, blocked;
        dist_times(&exchange, &blocked);
        printf("%s: gradient exchange %.2f s, %.2f s of it waited for (%.0f%% hidden behind "
               "the backward pass), rank 0\n", PROG, exchange, blocked,
               exchange > 0 ? 100.0 * (1.0 - blocked / exchange) : 0.0);
    }

    free(perm);
    evaluator_free(&ev);
    model_free(&m);
    if (csv && fclose(csv))
        die(1, "--csv: writing '%s' failed: %s", o.csv, strerror(errno));
    idx_split_free(&train);
    idx_split_free(&test);
    dist_finish();
    return 0;
}
