// CPU driver for the kernel simulator: `driver OP DIR` reads DIR/args.txt ("name value" lines)
// and DIR/<input>.bin (little-endian f32; fp16 inputs are given as f32 values that the driver
// converts), runs the kernels of OP exactly as the CUDA backend launches them, and writes
// DIR/out_<name>.bin (f32, or f64 for fp64 outputs). tests/kernel_sim.rs compares the outputs
// with the CPU backend. Exit code 2 on a usage error.
#define CINESEG_SIM
#include "../adamw.cu"
#include "../batchnorm.cu"
#include "../conv3x3.cu"
#include "../head.cu"
#include "../loss.cu"
#include "../pool.cu"
#include "../tensor.cu"
#include "../upconv.cu"

#include <fstream>
#include <map>
#include <string>

namespace {
std::string dir;
std::map<std::string, double> args;

[[noreturn]] void die(const std::string &m) {
  std::fprintf(stderr, "driver: %s\n", m.c_str());
  std::exit(2);
}

long long iarg(const char *k) {
  auto it = args.find(k);
  if (it == args.end()) die(std::string("missing argument ") + k);
  return (long long)it->second;
}
double farg(const char *k, double dflt) {
  auto it = args.find(k);
  return it == args.end() ? dflt : it->second;
}

std::vector<float> read_f32(const std::string &name) {
  std::ifstream f(dir + "/" + name + ".bin", std::ios::binary);
  if (!f) die("cannot read " + name);
  std::vector<char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}
std::vector<__half> read_f16(const std::string &name) {
  auto v = read_f32(name);
  std::vector<__half> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = __float2half_rn(v[i]);
  return h;
}
template <class T>
void write_raw(const std::string &name, const std::vector<T> &v) {
  std::ofstream f(dir + "/out_" + name + ".bin", std::ios::binary);
  f.write(reinterpret_cast<const char *>(v.data()), std::streamsize(v.size() * sizeof(T)));
}
void write_f16(const std::string &name, const std::vector<__half> &v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = __half2float(v[i]);
  write_raw(name, o);
}

dim3 grid1d(long long n, int threads) { return dim3(unsigned(std::min<long long>((n + threads - 1) / threads, 64))); }
const int T1 = 128;

// ---- ops ----
void op_conv_fwd() {
  int n = iarg("n"), h = iarg("h"), w = iarg("w"), cin = iarg("cin"), cout = iarg("cout"), ldx = iarg("ldx");
  int ldy = iarg("ldy"), relu = iarg("relu"), use_bias = iarg("bias"), use_stats = iarg("stats");
  auto x = read_f16("x");
  auto wt = read_f32("w");
  std::vector<float> bias = use_bias ? read_f32("b") : std::vector<float>();
  std::vector<__half> wpk(size_t(9) * cin * cout), wdg(wpk.size());
  SIM_LAUNCH(conv3x3_pack, grid1d(wt.size(), T1), dim3(T1), wt.data(), nullptr, wpk.data(), wdg.data(), cin, cout);
  long long M = (long long)n * h * w;
  std::vector<__half> y(size_t(M) * ldy, __float2half_rn(0.0f));
  std::vector<double> stats(2 * cout, 0.0);
  dim3 g(unsigned((M + CONV_BM - 1) / CONV_BM), unsigned((cout + CONV_BN - 1) / CONV_BN));
  SIM_LAUNCH(conv3x3_fwd, g, dim3(CONV_THREADS), x.data(), ldx, wpk.data(), y.data(), ldy,
             use_bias ? bias.data() : nullptr, relu, use_stats ? stats.data() : nullptr, n, h, w, cin, cout);
  write_f16("y", y);
  write_raw("stats", stats);
  write_f16("wdgrad", wdg);
}

void op_conv_dgrad() {
  int n = iarg("n"), h = iarg("h"), w = iarg("w"), cin = iarg("cin"), cout = iarg("cout");
  auto dy = read_f16("dy");
  auto wt = read_f32("w");
  std::vector<__half> wpk(size_t(9) * cin * cout), wdg(wpk.size());
  SIM_LAUNCH(conv3x3_pack, grid1d(wt.size(), T1), dim3(T1), wt.data(), nullptr, wpk.data(), wdg.data(), cin, cout);
  long long M = (long long)n * h * w;
  std::vector<__half> dx(size_t(M) * cin);
  dim3 g(unsigned((M + CONV_BM - 1) / CONV_BM), unsigned((cin + CONV_BN - 1) / CONV_BN));
  SIM_LAUNCH(conv3x3_fwd, g, dim3(CONV_THREADS), dy.data(), cout, wdg.data(), dx.data(), cin, nullptr, 0, nullptr, n, h,
             w, cout, cin);
  write_f16("dx", dx);
}

void op_conv_wgrad() {
  int n = iarg("n"), h = iarg("h"), w = iarg("w"), cin = iarg("cin"), cout = iarg("cout"), ldx = iarg("ldx");
  int splits = iarg("splits");
  auto x = read_f16("x");
  auto dy = read_f16("dy");
  long long M = (long long)n * h * w;
  long long pps = (M + splits - 1) / splits;
  std::vector<float> dw(size_t(9) * cin * cout, 0.0f);
  dim3 g(unsigned((9 * cin + CONV_BM - 1) / CONV_BM), unsigned((cout + CONV_BN - 1) / CONV_BN), unsigned(splits));
  SIM_LAUNCH(conv3x3_wgrad, g, dim3(CONV_THREADS), x.data(), ldx, dy.data(), cout, dw.data(), n, h, w, cin, cout, pps);
  write_raw("dw", dw);
}

void op_pool() {
  int n = iarg("n"), h = iarg("h"), w = iarg("w"), c = iarg("c"), ldx = iarg("ldx"), use_add = iarg("add");
  auto x = read_f16("x");
  auto dout = read_f16("dout");
  std::vector<__half> add = use_add ? read_f16("skip") : std::vector<__half>();
  long long P = (long long)n * (h / 2) * (w / 2) * c;
  std::vector<__half> y(P);
  std::vector<unsigned char> idx(P);
  SIM_LAUNCH(maxpool2_fwd, grid1d(P, T1), dim3(T1), x.data(), ldx, y.data(), idx.data(), n, h, w, c);
  std::vector<__half> dx(size_t(n) * h * w * c);
  SIM_LAUNCH(maxpool2_bwd, grid1d(dx.size(), T1), dim3(T1), dout.data(), idx.data(), use_add ? add.data() : nullptr,
             ldx, dx.data(), n, h, w, c);
  write_f16("y", y);
  std::vector<float> fi(idx.begin(), idx.end());
  write_raw("idx", fi);
  write_f16("dx", dx);
}

void op_upconv() {
  int n = iarg("n"), h = iarg("h"), w = iarg("w"), cin = iarg("cin"), cout = iarg("cout");
  int ldy = iarg("ldy"), off = iarg("offset"), splits = iarg("splits");
  auto x = read_f16("x");
  auto wt = read_f32("w");
  auto b = read_f32("b");
  auto dcat = read_f16("dcat");
  std::vector<__half> wpk(wt.size());
  SIM_LAUNCH(upconv2_pack, grid1d(wt.size(), T1), dim3(T1), wt.data(), wpk.data(), cin, cout);
  long long Q = 4LL * n * h * w;
  std::vector<__half> y(size_t(Q) * ldy, __float2half_rn(0.0f));
  SIM_LAUNCH(upconv2_fwd, grid1d(Q * cout, T1), dim3(T1), x.data(), cin, wpk.data(), b.data(), y.data() + off, ldy, n, h,
             w, cin, cout);
  std::vector<__half> dx(size_t(n) * h * w * cin);
  SIM_LAUNCH(upconv2_bwd_data, grid1d(dx.size(), T1), dim3(T1), dcat.data() + off, ldy, wpk.data(), dx.data(), n, h, w,
             cin, cout);
  std::vector<float> dw(wt.size(), 0.0f), db(cout, 0.0f);
  long long P = (long long)n * h * w, pps = (P + splits - 1) / splits;
  dim3 g(unsigned((wt.size() + T1 - 1) / T1), unsigned(splits));
  SIM_LAUNCH(upconv2_wgrad, g, dim3(T1), x.data(), cin, dcat.data() + off, ldy, dw.data(), n, h, w, cin, cout, pps);
  dim3 gs(unsigned((cout + CSUM_TX - 1) / CSUM_TX), 2);
  SIM_LAUNCH(channel_sums_f16, gs, dim3(CSUM_TX, CSUM_TY), dcat.data() + off, ldy, Q, cout, db.data());
  write_f16("y", y);
  write_f16("dx", dx);
  write_raw("dw", dw);
  write_raw("db", db);
}

void op_bn() {
  long long rows = iarg("rows");
  int c = iarg("c"), ldy = iarg("ldy");
  auto z = read_f16("z");
  auto gamma = read_f32("gamma");
  auto beta = read_f32("beta");
  auto rm = read_f32("rmean");
  auto rv = read_f32("rvar");
  auto dy = read_f16("dy");
  // Statistics as the conv epilogue would deliver them (sums of the fp16 values).
  std::vector<double> stats(2 * c, 0.0);
  for (long long r = 0; r < rows; ++r)
    for (int ch = 0; ch < c; ++ch) {
      double v = __half2float(z[r * c + ch]);
      stats[ch] += v;
      stats[c + ch] += v * v;
    }
  std::vector<float> mean(c), invstd(c), scale(c), shift(c);
  SIM_LAUNCH(bn_finalize, grid1d(c, 32), dim3(32), stats.data(), rows, gamma.data(), beta.data(), rm.data(), rv.data(),
             0.1f, 1e-5f, mean.data(), invstd.data(), scale.data(), shift.data(), c);
  std::vector<__half> y(size_t(rows) * ldy, __float2half_rn(0.0f));
  SIM_LAUNCH(bn_apply_relu, grid1d(rows * c, T1), dim3(T1), z.data(), c, y.data(), ldy, scale.data(), shift.data(), rows,
             c);
  std::vector<double> sums(2 * c, 0.0);
  dim3 g(unsigned((c + BNR_TX - 1) / BNR_TX), 3);
  SIM_LAUNCH(bn_bwd_reduce, g, dim3(BNR_TX, BNR_TY), dy.data(), c, z.data(), c, y.data(), ldy, mean.data(),
             invstd.data(), sums.data(), rows, c);
  std::vector<__half> dx(size_t(rows) * c);
  SIM_LAUNCH(bn_bwd_dx, grid1d(rows * c, T1), dim3(T1), dy.data(), c, z.data(), c, y.data(), ldy, gamma.data(),
             mean.data(), invstd.data(), sums.data(), dx.data(), c, rows, c);
  std::vector<float> dgamma(c, 0.0f), dbeta(c, 0.0f);
  SIM_LAUNCH(bn_param_grads, grid1d(c, 32), dim3(32), sums.data(), dgamma.data(), dbeta.data(), c);
  write_f16("y", y);
  write_f16("dx", dx);
  write_raw("dgamma", dgamma);
  write_raw("dbeta", dbeta);
  write_raw("rmean", rm);
  write_raw("rvar", rv);
}

void op_loss() {
  int n = iarg("n"), k = iarg("k");
  long long hw = iarg("hw");
  float scale = float(farg("scale", 1.0));
  auto logits = read_f32("logits");
  auto lab = read_f32("labels");
  auto lbd = read_f32("labelled");
  std::vector<unsigned char> labels(lab.begin(), lab.end()), labelled(lbd.begin(), lbd.end());
  std::vector<double> acc(3 * k + 1, 0.0), out(3 + 2 * k, 0.0);
  SIM_LAUNCH(loss_fwd, grid1d(n * hw, T1), dim3(T1), logits.data(), labels.data(), labelled.data(), n, hw, k, acc.data());
  SIM_LAUNCH(loss_finalize, dim3(1), dim3(32), acc.data(), labelled.data(), n, hw, k, out.data());
  std::vector<float> dl(logits.size());
  SIM_LAUNCH(loss_bwd, grid1d(n * hw, T1), dim3(T1), logits.data(), labels.data(), labelled.data(), acc.data(),
             out.data(), n, hw, k, scale, dl.data());
  write_raw("out", out);
  write_raw("dlogits", dl);
}

void op_head() {
  long long rows = iarg("rows");
  int c = iarg("c"), k = iarg("k"), ldx = iarg("ldx"), splits = iarg("splits");
  auto x = read_f16("x");
  auto wt = read_f32("w");
  auto b = read_f32("b");
  auto dl = read_f32("dl");
  std::vector<float> logits(size_t(rows) * k);
  SIM_LAUNCH(head_fwd, grid1d(rows * k, T1), dim3(T1), x.data(), ldx, wt.data(), b.data(), logits.data(), rows, c, k);
  std::vector<__half> dx(size_t(rows) * c);
  SIM_LAUNCH(head_bwd_data, grid1d(rows * c, T1), dim3(T1), dl.data(), wt.data(), dx.data(), rows, c, k);
  std::vector<float> dw(wt.size(), 0.0f), db(k, 0.0f);
  long long pps = (rows + splits - 1) / splits;
  dim3 g(unsigned((k * c + k + T1 - 1) / T1), unsigned(splits));
  SIM_LAUNCH(head_wgrad, g, dim3(T1), x.data(), ldx, dl.data(), dw.data(), db.data(), rows, c, k, pps);
  write_raw("logits", logits);
  write_f16("dx", dx);
  write_raw("dw", dw);
  write_raw("db", db);
}

void op_adamw() {
  long long n = iarg("len");
  auto p = read_f32("p");
  auto g = read_f32("g");
  auto m = read_f32("m");
  auto v = read_f32("v");
  int flag = 0;
  SIM_LAUNCH(grad_overflow, grid1d(n, T1), dim3(T1), g.data(), n, &flag);
  std::vector<__half> p16(n);
  SIM_LAUNCH(adamw_step, grid1d(n, T1), dim3(T1), p.data(), g.data(), m.data(), v.data(), p16.data(), n,
             float(farg("beta1", 0.9)), float(farg("beta2", 0.999)), float(farg("eps", 1e-8)), float(farg("decay", 1.0)),
             float(farg("step_size", 1e-3)), float(farg("inv_sqrt_bc2", 1.0)), float(farg("inv_scale", 1.0)), &flag);
  std::vector<float> state = {float(farg("scale", 65536.0)), float(farg("good", 0.0))};
  int flag_before = flag;
  SIM_LAUNCH(loss_scale_update, dim3(1), dim3(1), state.data(), &flag, int(farg("interval", 2000)), 16777216.0f);
  write_raw("p", p);
  write_raw("m", m);
  write_raw("v", v);
  write_f16("p16", p16);
  std::vector<float> meta = {float(flag_before), state[0], state[1], float(flag)};
  write_raw("meta", meta);
}
}  // namespace

int main(int argc, char **argv) {
  if (argc != 3) die("usage: driver OP DIR");
  const std::string op = argv[1];
  dir = argv[2];
  std::ifstream a(dir + "/args.txt");
  std::string k;
  double v;
  while (a >> k >> v) args[k] = v;
  if (op == "conv_fwd") op_conv_fwd();
  else if (op == "conv_dgrad") op_conv_dgrad();
  else if (op == "conv_wgrad") op_conv_wgrad();
  else if (op == "pool") op_pool();
  else if (op == "upconv") op_upconv();
  else if (op == "bn") op_bn();
  else if (op == "loss") op_loss();
  else if (op == "head") op_head();
  else if (op == "adamw") op_adamw();
  else die("unknown op " + op);
  return 0;
}
