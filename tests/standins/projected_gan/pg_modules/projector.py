import types

from torch import nn


class _EfficientNet(nn.Module):
    """What timm >= 0.6 returns: conv_stem, bn1 (activation folded in, no act1), nine blocks."""

    def __init__(self):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        widths = [4, 4, 4, 6, 6, 8, 8, 8, 8, 8]
        strides = [1, 1, 2, 2, 1, 2, 1, 1, 1]
        self.blocks = nn.Sequential(*[nn.Conv2d(widths[i], widths[i + 1], 3, stride=strides[i], padding=1)
                                      for i in range(9)])


def _create_model(name, pretrained=False, **kwargs):
    if pretrained:
        raise OSError("no internet: cannot download from the hub")
    return _EfficientNet()


timm = types.SimpleNamespace(create_model=_create_model)  # upstream does `import timm`


def _make_efficientnet(model):
    pretrained = nn.Module()
    # fails on timm >= 0.6
    pretrained.layer0 = nn.Sequential(model.conv_stem, model.bn1, model.act1, *model.blocks[0:2])
    pretrained.layer1 = nn.Sequential(*model.blocks[2:3])
    pretrained.layer2 = nn.Sequential(*model.blocks[3:5])
    pretrained.layer3 = nn.Sequential(*model.blocks[5:9])
    return pretrained


class _Fuse(nn.Module):
    def __init__(self, channels, lowest=False):
        super().__init__()
        self.conv, self.lowest = nn.Conv2d(channels, channels, 1), lowest

    def forward(self, x, skip=None):
        if skip is not None:
            x = nn.functional.interpolate(x, size=skip.shape[-2:]) + skip
        return self.conv(x)


class F_RandomProj(nn.Module):
    def __init__(self, cout=4, proj_type=2, **kwargs):
        super().__init__()
        self.proj_type = proj_type
        self.pretrained = _make_efficientnet(timm.create_model("tf_efficientnet_lite0", pretrained=True))
        self.scratch = nn.Module()
        for k, cin in enumerate([4, 6, 8, 8]):
            setattr(self.scratch, f"layer{k}_ccm", nn.Conv2d(cin, cout, 1))
            setattr(self.scratch, f"layer{k}_csm", _Fuse(cout, lowest=k == 3))
        self.CHANNELS = [cout] * 4

    def forward(self, x):
        out0 = self.pretrained.layer0(x)
        out1 = self.pretrained.layer1(out0)
        out2 = self.pretrained.layer2(out1)
        out3 = self.pretrained.layer3(out2)
        out = {"0": out0, "1": out1, "2": out2, "3": out3}
        if self.proj_type == 0:
            return out
        out = {k: getattr(self.scratch, f"layer{k}_ccm")(v) for k, v in out.items()}
        if self.proj_type == 1:
            return out
        o3 = self.scratch.layer3_csm(out["3"])
        o2 = self.scratch.layer2_csm(o3, out["2"])
        o1 = self.scratch.layer1_csm(o2, out["1"])
        o0 = self.scratch.layer0_csm(o1, out["0"])
        return {"0": o0, "1": o1, "2": o2, "3": o3}
