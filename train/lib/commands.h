// The vt subcommands, one function each; main() dispatches on the command name.
#pragma once

#include "models/config.h"
#include "train/lib/args.h"

namespace vt {

int command_demo(Args& args);
int command_bench_gemm(Args& args);
int command_bench_train(Args& args);
int command_bench_data(Args& args);
int command_info(Args& args);
int command_init(Args& args);
int command_forward(Args& args);
int command_train(Args& args);
int command_eval(Args& args);
int command_predict(Args& args);
int command_compare(Args& args);

// The preset named by --model with the key=value overrides applied, validated.
models::ModelConfig config_from_args(Args& args);
// The model of a checkpoint: --model (and overrides) when given, else the checkpoint's metadata.
models::ModelConfig checkpoint_config(Args& args, const std::string& checkpoint);

}  // namespace vt
