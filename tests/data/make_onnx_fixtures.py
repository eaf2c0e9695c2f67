"""Writes the ONNX files of tests/data that torch.onnx.export's dynamo
exporter produced (it needs onnxscript and takes ~30 s, too slow to run in
the test suite), with the torch outputs they must reproduce:

    /work/venv/bin/python tests/data/make_onnx_fixtures.py

dynamo_lstm_gru_rnn.onnx   Embedding -> LSTM(2 layers, bidirectional,
                           batch_first) -> GRU -> RNN(relu) -> Linear -> Softmax
dynamo_gru_tm.onnx         Embedding -> GRU(2 layers, bidirectional,
                           time-major) -> Linear -> LogSoftmax
Each has a .npz beside it: ids (the input) and out (torch's output).
"""
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class LstmGruRnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(30, 6)
        self.lstm = torch.nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = torch.nn.GRU(10, 4, batch_first=True)
        self.rnn = torch.nn.RNN(4, 3, batch_first=True, nonlinearity="relu")
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, ids):
        y, _ = self.lstm(self.emb(ids))
        y, _ = self.gru(y)
        y, _ = self.rnn(y)
        return torch.softmax(self.fc(y), dim=-1)


class GruTimeMajor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(30, 6)
        self.gru = torch.nn.GRU(6, 5, num_layers=2, bidirectional=True)
        self.fc = torch.nn.Linear(10, 3)

    def forward(self, ids):
        y, _ = self.gru(self.emb(ids))
        return torch.log_softmax(self.fc(y), dim=-1)


def main():
    for name, cls, shape in (("dynamo_lstm_gru_rnn", LstmGruRnn, (3, 6)),
                             ("dynamo_gru_tm", GruTimeMajor, (7, 2))):
        torch.manual_seed(1)
        net = cls().eval()
        ids = torch.randint(0, 30, shape)
        with torch.no_grad():
            out = net(ids).numpy()
        path = os.path.join(HERE, name + ".onnx")
        torch.onnx.export(net, (ids,), path, dynamo=True, input_names=["ids"],
                          output_names=["out"], external_data=False)
        np.savez(os.path.join(HERE, name + ".npz"), ids=ids.numpy(), out=out)
        print("wrote", path)


if __name__ == "__main__":
    main()
