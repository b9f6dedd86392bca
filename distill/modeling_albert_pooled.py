"""ALBERT sequence classifier with mean pooling over real tokens.

Stock ``AlbertForSequenceClassification`` pools the first token through a
tanh layer (``student.pooling=cls``, the default). This class pools the mean
of the last hidden states over non-padding tokens instead. It imports only
torch and transformers: ``save_pretrained`` copies this file into the model
directory, so ``AutoModelForSequenceClassification.from_pretrained(dir,
trust_remote_code=True)`` loads it with no ``distill`` installed.
"""

import torch
from torch import nn
from transformers import AlbertModel, AlbertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class AlbertMeanPoolForSequenceClassification(AlbertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        kwargs.pop("return_dict", None)
        out = self.albert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs)
        hidden = out.last_hidden_state  # [b, t, h]
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        real = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [b, t, 1]
        pooled = (hidden * real).sum(1) / real.sum(1).clamp_min(1.0)  # [b, h]
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


AlbertMeanPoolForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
