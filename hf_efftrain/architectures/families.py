"""The families hf_efftrain knows out of the box: BERT-like, DistilBERT, GPT-2, Llama-like (GQA, rotary), ViT.

Each entry only says where things live in that family's modules; importing
:mod:`hf_efftrain.architectures` registers them all. Example::

    get_architecture("qwen2").name          # -> "llama": Qwen2 shares the Llama layout
"""

from __future__ import annotations

from hf_efftrain.architectures.registry import register_architecture
from hf_efftrain.architectures.spec import ArchitectureSpec, Projection

_BERT_LIKE = {
    "layers_path": "encoder.layer",
    "depth_key": "num_hidden_layers",
    "heads_key": "num_attention_heads",
    "hidden_key": "hidden_size",
    "query": Projection("attention.self.query"),
    "key": Projection("attention.self.key"),
    "value": Projection("attention.self.value"),
    "output": Projection("attention.output.dense"),
    "mlp_in": (Projection("intermediate.dense"),),
    "mlp_out": Projection("output.dense"),
}
register_architecture(
    ArchitectureSpec(name="bert", model_types=("bert", "roberta", "xlm-roberta", "camembert"), **_BERT_LIKE)
)
register_architecture(
    ArchitectureSpec(
        name="distilbert",
        model_types=("distilbert",),
        layers_path="transformer.layer",
        depth_key="n_layers",
        heads_key="n_heads",
        hidden_key="dim",
        query=Projection("attention.q_lin"),
        key=Projection("attention.k_lin"),
        value=Projection("attention.v_lin"),
        output=Projection("attention.out_lin"),
        mlp_in=(Projection("ffn.lin1"),),
        mlp_out=Projection("ffn.lin2"),
    )
)
register_architecture(
    ArchitectureSpec(
        name="gpt2",
        model_types=("gpt2",),
        layers_path="h",
        depth_key="n_layer",
        heads_key="n_head",
        hidden_key="n_embd",
        query=Projection("attn.c_attn", "conv1d", (0, 3)),
        key=Projection("attn.c_attn", "conv1d", (1, 3)),
        value=Projection("attn.c_attn", "conv1d", (2, 3)),
        output=Projection("attn.c_proj", "conv1d"),
        mlp_in=(Projection("mlp.c_fc", "conv1d"),),
        mlp_out=Projection("mlp.c_proj", "conv1d"),
        layer_attributes=("attn.layer_idx",),
    )
)
register_architecture(
    ArchitectureSpec(
        name="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3"),
        layers_path="layers",
        depth_key="num_hidden_layers",
        heads_key="num_attention_heads",
        kv_heads_key="num_key_value_heads",
        hidden_key="hidden_size",
        query=Projection("self_attn.q_proj"),
        key=Projection("self_attn.k_proj"),
        value=Projection("self_attn.v_proj"),
        output=Projection("self_attn.o_proj"),
        mlp_in=(Projection("mlp.gate_proj"), Projection("mlp.up_proj")),
        mlp_out=Projection("mlp.down_proj"),
        rotary=True,
        layer_attributes=("self_attn.layer_idx",),
    )
)
register_architecture(
    ArchitectureSpec(
        name="vit",
        model_types=("vit",),
        layers_path="layers",
        depth_key="num_hidden_layers",
        heads_key="num_attention_heads",
        hidden_key="hidden_size",
        query=Projection("attention.q_proj"),
        key=Projection("attention.k_proj"),
        value=Projection("attention.v_proj"),
        output=Projection("attention.o_proj"),
        mlp_in=(Projection("mlp.fc1"),),
        mlp_out=Projection("mlp.fc2"),
    )
)
